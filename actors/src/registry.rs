//! The engine's handle table: which graphs are open, by handle and by graph id, so that
//! any thread turns a [`GraphHandle`] into a graph actor's address.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use actix::Addr;
use dashmap::DashMap;
use peergraph_engine::{GraphHandle, GraphId, PeerError, ResultCode};

use crate::graph::GraphActor;
use crate::table::ConnectionTable;

/// What the engine keeps of an open graph: its actor and its connection table.
#[derive(Clone)]
pub(crate) struct GraphEntry {
    pub(crate) addr: Addr<GraphActor>,
    pub(crate) table: Arc<ConnectionTable>,
    /// True while the graph is in the table: a facade that holds the entry asks this
    /// instead of looking its handle up on every call.
    open: Arc<AtomicBool>,
}

impl GraphEntry {
    /// The entry of a graph about to be entered in the table.
    pub(crate) fn new(addr: Addr<GraphActor>, table: Arc<ConnectionTable>) -> Self {
        GraphEntry {
            addr,
            table,
            open: Arc::new(AtomicBool::new(true)),
        }
    }

    /// Whether the graph is still in its engine's table (not closed, no shutdown since).
    pub(crate) fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    fn close(&self) {
        self.open.store(false, Ordering::Release);
    }
}

/// The open graphs of one engine.
#[derive(Default)]
pub(crate) struct Registry {
    graphs: DashMap<GraphHandle, GraphEntry>,
    graph_ids: DashMap<GraphId, GraphHandle>,
}

impl Registry {
    /// Reserves `graph_id` for the graph `handle` is about to name.
    ///
    /// # Errors
    /// `PEER_E_DUPLICATE_GRAPH` when a graph with that id is open.
    pub(crate) fn reserve(&self, graph_id: &GraphId, handle: GraphHandle) -> Result<(), PeerError> {
        match self.graph_ids.entry(graph_id.clone()) {
            dashmap::Entry::Occupied(_) => Err(PeerError::new(ResultCode::PEER_E_DUPLICATE_GRAPH)),
            dashmap::Entry::Vacant(vacant) => {
                vacant.insert(handle);
                Ok(())
            }
        }
    }

    /// Enters the started graph `handle`.
    pub(crate) fn insert(&self, handle: GraphHandle, entry: GraphEntry) {
        self.graphs.insert(handle, entry);
    }

    /// The open graph `handle`.
    pub(crate) fn get(&self, handle: GraphHandle) -> Option<GraphEntry> {
        self.graphs.get(&handle).map(|entry| entry.clone())
    }

    /// True while a graph with `graph_id` is open (or opening).
    pub(crate) fn holds(&self, graph_id: &GraphId) -> bool {
        self.graph_ids.contains_key(graph_id)
    }

    /// How many graphs are open.
    pub(crate) fn len(&self) -> usize {
        self.graphs.len()
    }

    /// Removes a closed graph and frees its graph id (or an id reserved for a graph that
    /// did not start).
    pub(crate) fn forget(&self, handle: GraphHandle, graph_id: &GraphId) {
        if let Some((_, entry)) = self.graphs.remove(&handle) {
            entry.close();
        }
        self.graph_ids
            .remove_if(graph_id, |_, owner| *owner == handle);
    }

    /// Empties the table (the last shutdown), returning the graphs that were open.
    pub(crate) fn drain(&self) -> Vec<Addr<GraphActor>> {
        let graphs = self
            .graphs
            .iter()
            .map(|entry| {
                entry.close();
                entry.addr.clone()
            })
            .collect();
        self.graphs.clear();
        self.graph_ids.clear();
        graphs
    }
}
