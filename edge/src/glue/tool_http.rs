//! wasm32-only: the `fetch`-backed [`ToolHttp`] (issue 18): one POST to a
//! customer tool, abandoned (AbortController) after its timeout, which also
//! bounds reading the answer; redirects are not followed (a 3xx could bounce
//! it to an address the URL guard refuses); the body is read as a stream and
//! given up past the bound, so a huge answer is never buffered.

use crate::traffic::port::LocalFuture;
use crate::webhooks::tool_calls::{ToolHttp, ToolHttpError, ToolReply};
use futures_util::future::{select, Either};
use futures_util::StreamExt;
use std::time::Duration;
use worker::{
    AbortController, Date, Delay, Fetch, Headers, Method, Request, RequestInit, RequestRedirect,
};

pub struct FetchToolHttp;

async fn post_and_read(
    url: &str,
    headers: &[(String, String)],
    body: &str,
    signal: &worker::AbortSignal,
    max_body_bytes: usize,
) -> Result<ToolReply, ToolHttpError> {
    let failed = |what: &str, e: worker::Error| ToolHttpError::Failed(format!("{what}: {e}"));
    let h = Headers::new();
    for (k, v) in headers {
        h.set(k, v).map_err(|e| failed("header", e))?;
    }
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(h)
        .with_body(Some(body.into()))
        .with_redirect(RequestRedirect::Manual);
    let req = Request::new_with_init(url, &init).map_err(|e| failed("bad request", e))?;
    let mut resp = Fetch::Request(req)
        .send_with_signal(signal)
        .await
        .map_err(|e| failed("request failed", e))?;
    let status = resp.status_code();
    let mut out = Vec::new();
    let mut too_large = false;
    if let Ok(mut stream) = resp.stream() {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| failed("reading the answer", e))?;
            if out.len() + chunk.len() > max_body_bytes {
                too_large = true;
                break;
            }
            out.extend_from_slice(&chunk);
        }
    }
    Ok(ToolReply {
        status,
        body: out,
        too_large,
    })
}

impl ToolHttp for FetchToolHttp {
    fn post<'a>(
        &'a self,
        url: &'a str,
        headers: &'a [(String, String)],
        body: &'a str,
        timeout_ms: u64,
        max_body_bytes: usize,
    ) -> LocalFuture<'a, Result<ToolReply, ToolHttpError>> {
        Box::pin(async move {
            let controller = AbortController::default();
            let signal = controller.signal();
            let work = std::pin::pin!(post_and_read(url, headers, body, &signal, max_body_bytes));
            let timeout = Delay::from(Duration::from_millis(timeout_ms));
            match select(work, timeout).await {
                Either::Left((result, _)) => result,
                Either::Right(_) => {
                    controller.abort();
                    Err(ToolHttpError::Timeout)
                }
            }
        })
    }

    fn now_ms(&self) -> u64 {
        Date::now().as_millis()
    }
}
