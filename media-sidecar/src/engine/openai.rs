//! OpenAI Realtime adapter (in progress).
