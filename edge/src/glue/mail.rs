//! wasm32-only: the transcript email's transports ([`MailTransport`]) and
//! its queue step. `SMTP_URL` set: SMTP over a TCP `connect()` socket
//! driven by the sans-IO [`SmtpClient`]; else the `MAIL` `send_email`
//! binding (Cloudflare Email) with the same composed message; else none
//! (`mail_not_configured`, logged). The sender is `MAIL_FROM`.

use crate::glue::env::secret_or_var;
use crate::mail::smtp::{parse_smtp_url, SmtpError, SmtpServer, Stage, Step};
use crate::mail::{self, MailError, MailJob, MailNext, MailTransport};
use futures_util::future::{select, Either};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use worker::{console_log, ConnectionBuilder, Delay, Env, SecureTransport, SendEmail, Socket};

/// The `send_email` binding's name in wrangler.toml (`[[send_email]] name = "MAIL"`).
pub const MAIL_BINDING: &str = "MAIL";
/// Longest wait for the connection or for one server reply (RFC 5321
/// 4.5.3.2 allows minutes; a queue consumer should not hang that long).
const SMTP_WAIT: Duration = Duration::from_secs(30);

/// The deployment's transport, chosen once per queue batch.
pub enum WorkerMail {
    Smtp(SmtpServer),
    Binding(SendEmail),
    /// `SMTP_URL` is set but unusable: every mail fails with its reason.
    Broken(String),
    None,
}

impl WorkerMail {
    pub fn from_env(env: &Env) -> WorkerMail {
        if let Some(url) = secret_or_var(env, "SMTP_URL").filter(|u| !u.trim().is_empty()) {
            return match parse_smtp_url(&url) {
                Ok(server) => WorkerMail::Smtp(server),
                Err(why) => WorkerMail::Broken(why),
            };
        }
        match env.send_email(MAIL_BINDING) {
            Ok(binding) => WorkerMail::Binding(binding),
            Err(_) => WorkerMail::None,
        }
    }
}

/// `MAIL_FROM`, else [`mail::DEFAULT_MAIL_FROM`].
pub fn mail_from(env: &Env) -> String {
    secret_or_var(env, "MAIL_FROM")
        .map(|f| f.trim().to_string())
        .filter(|f| !f.is_empty())
        .unwrap_or_else(|| mail::DEFAULT_MAIL_FROM.to_string())
}

/// `fut`, or `None` after [`SMTP_WAIT`].
async fn within<T>(fut: impl std::future::Future<Output = T>) -> Option<T> {
    let fut = std::pin::pin!(fut);
    match select(fut, Delay::from(SMTP_WAIT)).await {
        Either::Left((v, _)) => Some(v),
        Either::Right(_) => None,
    }
}

fn smtp(e: SmtpError) -> MailError {
    MailError::Smtp(e)
}

/// One SMTP dialogue over a fresh connection.
async fn send_smtp(
    server: &SmtpServer,
    from: &str,
    to: &str,
    message: &[u8],
) -> Result<(), MailError> {
    let transport = if server.tls {
        SecureTransport::On
    } else if server.starttls {
        // Plain until STARTTLS's 220, then `start_tls` (only allowed in this mode).
        SecureTransport::StartTls
    } else {
        SecureTransport::Off
    };
    let mut socket: Socket = ConnectionBuilder::new()
        .secure_transport(transport)
        .connect(server.host.clone(), server.port)
        .map_err(|e| smtp(SmtpError::Connect(e.to_string())))?;
    match within(socket.opened()).await {
        Some(Ok(_)) => {}
        Some(Err(e)) => return Err(smtp(SmtpError::Connect(e.to_string()))),
        None => return Err(smtp(SmtpError::Timeout(Stage::Greeting))),
    }
    // EHLO names the sender's domain: a Worker has no host name of its own.
    let hello = from.rsplit_once('@').map_or("localhost", |(_, d)| d);
    let mut client = server.client(hello, from, to, message);
    let mut buf = vec![0u8; 4096];
    let result = loop {
        let n = match within(socket.read(&mut buf)).await {
            Some(Ok(n)) => n,
            Some(Err(_)) => break client.closed().map_err(smtp),
            None => break Err(smtp(SmtpError::Timeout(client.stage()))),
        };
        if n == 0 {
            break client.closed().map_err(smtp);
        }
        let Some(input) = buf.get(..n) else {
            break client.closed().map_err(smtp);
        };
        let out = match client.receive(input) {
            Step::Write(out) => out,
            Step::StartTls => {
                socket = socket.start_tls();
                client.tls_started()
            }
            Step::Finish(out, done) => {
                if !out.is_empty() {
                    let _ = within(socket.write_all(&out)).await;
                }
                break done.map_err(smtp);
            }
        };
        if out.is_empty() {
            continue;
        }
        let wrote = within(async {
            socket.write_all(&out).await?;
            socket.flush().await
        })
        .await;
        match wrote {
            Some(Ok(())) => {}
            Some(Err(_)) => break client.closed().map_err(smtp),
            None => break Err(smtp(SmtpError::Timeout(client.stage()))),
        }
    };
    let _ = within(socket.close()).await;
    result
}

impl MailTransport for WorkerMail {
    fn name(&self) -> &'static str {
        match self {
            WorkerMail::Smtp(_) | WorkerMail::Broken(_) => "smtp",
            WorkerMail::Binding(_) => "send_email",
            WorkerMail::None => "none",
        }
    }

    async fn send(&self, from: &str, to: &str, message: &[u8]) -> Result<(), MailError> {
        match self {
            WorkerMail::Smtp(server) => send_smtp(server, from, to, message).await,
            WorkerMail::Binding(binding) => {
                // The composed message is ASCII (encoded words, quoted-printable).
                let raw =
                    std::str::from_utf8(message).map_err(|e| MailError::Compose(e.to_string()))?;
                let msg = worker::EmailMessage::new(from, to, raw)
                    .map_err(|e| MailError::Binding(String::from(e.message())))?;
                binding
                    .send(&msg)
                    .await
                    .map(|_| ())
                    .map_err(|e| MailError::Binding(String::from(e.message())))
            }
            WorkerMail::Broken(why) => Err(MailError::BadConfig(why.clone())),
            WorkerMail::None => Err(MailError::NotConfigured),
        }
    }
}

/// Runs one mail job and logs its outcome; `Some` is the job to queue again
/// after its delay.
pub async fn run(job: MailJob, from: &str, transport: &WorkerMail) -> Option<(MailJob, u32)> {
    let processed = mail::process(job, from, transport).await;
    console_log!("{}", processed.log);
    match processed.next {
        MailNext::Done => None,
        MailNext::Retry { job, delay_seconds } => Some((job, delay_seconds)),
    }
}
