//! Seed-API dialects: one module per existing call API that voxline accepts
//! as a drop-in, translating its requests onto the same call path as
//! [`crate::api`] (validation, the call store, the dispatch queue) and
//! sending webhooks in its format. None is written yet; each will get its own
//! file here and may import from any group but `glue`, never the reverse.
