//! An in-process client of a node: submits commands under its own origin and waits for their
//! events (the demo, tests, tools). The TCP gateway (kuku-gateway) is the networked equivalent.

use crate::pipeline::{Busy, Origin, OutputHandler, OutputSlot, Submitter};
use kuku_engine::{Command, Event};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

/// Routes output events to local clients by origin.
#[derive(Clone, Default)]
pub struct Router {
    routes: Arc<Mutex<BTreeMap<u64, mpsc::Sender<OutputSlot>>>>,
}

impl Router {
    /// The output handler that feeds this router (register it with the node).
    pub fn handler(&self) -> OutputHandler {
        let routes = Arc::clone(&self.routes);
        Box::new(move |slot: &OutputSlot, _, _| {
            if slot.origin == Origin::INTERNAL {
                return;
            }
            if let Ok(routes) = routes.lock()
                && let Some(tx) = routes.get(&slot.origin.0)
            {
                let _ = tx.send(*slot);
            }
        })
    }

    /// A client with its own origin id (> 0, unique per router).
    pub fn client(&self, origin: u64, submitter: Submitter) -> LocalClient {
        assert!(origin > 0, "origin 0 is the node's own");
        let (tx, rx) = mpsc::channel();
        if let Ok(mut routes) = self.routes.lock() {
            routes.insert(origin, tx);
        }
        LocalClient {
            origin: Origin(origin),
            submitter,
            rx,
        }
    }
}

pub struct LocalClient {
    origin: Origin,
    submitter: Submitter,
    rx: mpsc::Receiver<OutputSlot>,
}

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("the node stayed busy")]
    Busy,
    #[error("no reply within {0:?}")]
    Timeout(Duration),
}

impl LocalClient {
    /// Submits `command` and returns its events once its last one arrives.
    pub fn request(
        &mut self,
        command: Command,
        timeout: Duration,
    ) -> Result<Vec<Event>, RequestError> {
        let deadline = std::time::Instant::now() + timeout;
        let mut command = Some(command);
        while let Some(c) = command.take() {
            if let Err(Busy) = self.submitter.try_submit(self.origin, c.clone()) {
                if std::time::Instant::now() > deadline {
                    return Err(RequestError::Busy);
                }
                std::thread::sleep(Duration::from_micros(200));
                command = Some(c);
            }
        }
        let mut events = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(slot) => {
                    events.push(slot.event);
                    if slot.last {
                        return Ok(events);
                    }
                }
                Err(_) => return Err(RequestError::Timeout(timeout)),
            }
        }
    }
}
