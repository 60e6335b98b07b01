//! `echo`: a diagnostic engine that plays back what the callee says, frame for
//! frame (a line test, like a carrier's echo number). No AI, no transcript.
//! It also measures the media path: what goes in comes out unchanged.

use std::collections::VecDeque;

use super::{Engine, EngineError, EngineEvent};

pub struct EchoEngine {
    pending: VecDeque<Vec<i16>>,
    waker: Option<tokio::sync::mpsc::UnboundedSender<()>>,
    wake: Option<tokio::sync::mpsc::UnboundedReceiver<()>>,
}

impl Default for EchoEngine {
    fn default() -> EchoEngine {
        EchoEngine::new()
    }
}

impl EchoEngine {
    pub fn new() -> EchoEngine {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        EchoEngine {
            pending: VecDeque::new(),
            waker: Some(tx),
            wake: Some(rx),
        }
    }
}

impl Engine for EchoEngine {
    async fn send_audio(&mut self, frame: &[i16]) -> Result<(), EngineError> {
        self.pending.push_back(frame.to_vec());
        if let Some(w) = &self.waker {
            let _ = w.send(());
        }
        Ok(())
    }

    /// Cancel-safe: only the wake-up channel is awaited.
    async fn next_event(&mut self) -> Result<EngineEvent, EngineError> {
        loop {
            if let Some(frame) = self.pending.pop_front() {
                return Ok(EngineEvent::Audio(frame));
            }
            match self.wake.as_mut() {
                Some(rx) => {
                    if rx.recv().await.is_none() {
                        return Err(EngineError::Disconnected("echo closed".into()));
                    }
                }
                None => return Err(EngineError::Disconnected("echo closed".into())),
            }
        }
    }

    fn played(&mut self, _played_ms: u64) {}

    async fn close(&mut self) {
        self.waker = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_come_back_unchanged_and_in_order() {
        let mut e = EchoEngine::new();
        e.send_audio(&[1, 2, 3]).await.unwrap();
        e.send_audio(&[4]).await.unwrap();
        assert_eq!(
            e.next_event().await.unwrap(),
            EngineEvent::Audio(vec![1, 2, 3])
        );
        assert_eq!(e.next_event().await.unwrap(), EngineEvent::Audio(vec![4]));
        let idle = tokio::time::timeout(std::time::Duration::from_millis(50), e.next_event()).await;
        assert!(idle.is_err(), "nothing to echo: it waits");
        e.send_audio(&[5]).await.unwrap();
        assert_eq!(e.next_event().await.unwrap(), EngineEvent::Audio(vec![5]));
    }
}
