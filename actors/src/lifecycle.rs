//! What the engine and every graph actor share of the engine's life: the startup count,
//! whether the engine is started, and how many connection actors are alive.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use peergraph_engine::{PeerError, ResultCode};

/// The engine's life, shared with its graph actors.
#[derive(Debug, Default)]
pub(crate) struct EngineState {
    /// Startups not yet undone by a shutdown.
    startups: Mutex<u32>,
    initialized: AtomicBool,
    /// Connection actors alive across the engine's graphs.
    pub(crate) live_connection_actors: Arc<AtomicUsize>,
}

impl EngineState {
    /// True between startup and the last shutdown.
    pub(crate) fn is_initialized(&self) -> bool {
        self.initialized.load(Ordering::Acquire)
    }

    /// Counts one more startup.
    ///
    /// # Errors
    /// `E_FAIL` if the count's lock was poisoned.
    pub(crate) fn start(&self) -> Result<(), PeerError> {
        let mut startups = self
            .startups
            .lock()
            .map_err(|_| PeerError::new(ResultCode::E_FAIL))?;
        *startups += 1;
        self.initialized.store(true, Ordering::Release);
        Ok(())
    }

    /// Undoes one startup: true when it was the last (the engine is now stopped).
    ///
    /// # Errors
    /// `PEER_E_NOT_INITIALIZED` when the engine is not started; `E_FAIL` if the count's
    /// lock was poisoned.
    pub(crate) fn stop(&self) -> Result<bool, PeerError> {
        let mut startups = self
            .startups
            .lock()
            .map_err(|_| PeerError::new(ResultCode::E_FAIL))?;
        if *startups == 0 {
            return Err(PeerError::NOT_INITIALIZED);
        }
        *startups -= 1;
        if *startups > 0 {
            return Ok(false);
        }
        self.initialized.store(false, Ordering::Release);
        Ok(true)
    }

    /// How many connection actors are alive.
    pub(crate) fn connection_actors(&self) -> usize {
        self.live_connection_actors.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
impl EngineState {
    /// Engine state for a graph actor started by a unit test: started once.
    pub(crate) fn started() -> Arc<Self> {
        let state = EngineState::default();
        let _ = state.start();
        Arc::new(state)
    }
}
