//! wasm32-only: the `Directory` Durable Object (one per tenant, plus the
//! `_claims` object; SQLite storage). Every decision is the pure
//! `directory::handle`; this file only feeds it.

use crate::directory::{self, DirectoryRequest};
use crate::glue::env::DoSql;
use std::cell::Cell;
use worker::{console_log, durable_object, Date, Env, Request, Response, Result, State};

#[durable_object]
pub struct Directory {
    state: State,
    schema_ready: Cell<bool>,
}

impl worker::DurableObject for Directory {
    fn new(state: State, _env: Env) -> Self {
        Directory {
            state,
            schema_ready: Cell::new(false),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let request: DirectoryRequest = match req.json().await {
            Ok(r) => r,
            Err(e) => return Response::error(format!("bad directory request: {e}"), 400),
        };
        let sql = DoSql(self.state.storage().sql());
        let answer = (|| {
            if !self.schema_ready.get() {
                directory::open(&sql)?;
                self.schema_ready.set(true);
            }
            directory::handle(&sql, request, Date::now().as_millis())
        })();
        match answer {
            Ok(answer) => Response::from_json(&answer),
            Err(e) => {
                console_log!("directory: {e:?}");
                Response::error(format!("directory: {e:?}"), 503)
            }
        }
    }
}
