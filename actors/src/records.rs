//! The record and database calls on the async facade: each sends the graph actor its
//! message (see `graph::record_messages` for what each answers).

use std::path::PathBuf;

use peergraph_engine::{
    GraphProperties, NewRecord, PeerError, PeerId, Record, RecordId, RecordType, RecordUpdate,
};

use crate::facade::Graph;
use crate::graph::{
    AddRecord, DeleteRecord, EnumRecords, ExportDatabase, GetProperties, GetRecord, ImportDatabase,
    SearchRecords, SetProperties, UpdateRecord, ValidateDeferredRecords,
};

impl Graph {
    /// `PeerGraphAddRecord` (see [`AddRecord`]): the new record's id, once it is durable.
    ///
    /// # Errors
    /// `PEER_E_GRAPH_NOT_READY`, `E_INVALIDARG`, `PEER_E_MAX_RECORD_SIZE_EXCEEDED`,
    /// `E_ACCESSDENIED`, `PEER_E_GRAPH_SHUTTING_DOWN`, `E_OUTOFMEMORY`, and the store's
    /// `PEER_E_DISK_FULL`, `PEER_E_INVALID_DATABASE`, `E_FAIL`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    ///
    /// use peergraph::{
    ///     Attributes, Engine, GraphId, GraphOptions, GraphProperties, GraphTime, NewRecord,
    ///     PeerId, RecordType, Version,
    /// };
    ///
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let engine = Engine::new()?;
    /// engine.startup(Version::V1_0)?;
    /// let properties = GraphProperties::new(GraphId::new("chat")?, PeerId::new("alice")?);
    /// let graph = engine.create_graph(properties, GraphOptions::default())?;
    /// let expiration = GraphTime::from_system_time(SystemTime::now() + Duration::from_secs(60))?;
    /// let id = graph
    ///     .add_record(NewRecord {
    ///         record_type: RecordType::from_u128(1)?,
    ///         attributes: Attributes::parse(
    ///             r#"<attributes><attribute name="room" type="string">lobby</attribute></attributes>"#,
    ///         )?,
    ///         expiration,
    ///         autorefresh: false,
    ///         data: b"hello".to_vec(),
    ///     })
    ///     .await?;
    /// let found = graph
    ///     .search_records(r#"<peersearch><clause attrib="room" type="string">lob*</clause></peersearch>"#)
    ///     .await?;
    /// assert_eq!(found[0].id(), id);
    /// graph.close().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn add_record(&self, record: NewRecord) -> Result<RecordId, PeerError> {
        self.call(AddRecord { record }).await?
    }

    /// `PeerGraphUpdateRecord` (see [`UpdateRecord`]).
    ///
    /// # Errors
    /// `PEER_E_GRAPH_NOT_READY`, `PEER_E_RECORD_NOT_FOUND`, `E_INVALIDARG`,
    /// `PEER_E_MAX_RECORD_SIZE_EXCEEDED`, `E_ACCESSDENIED`, and the write's codes as
    /// [`add_record`](Graph::add_record).
    pub async fn update_record(
        &self,
        record_id: RecordId,
        update: RecordUpdate,
    ) -> Result<(), PeerError> {
        self.call(UpdateRecord { record_id, update }).await?
    }

    /// `PeerGraphDeleteRecord` (see [`DeleteRecord`]).
    ///
    /// # Errors
    /// `PEER_E_GRAPH_NOT_READY`, `PEER_E_RECORD_NOT_FOUND`, `E_ACCESSDENIED`, and the
    /// write's codes as [`add_record`](Graph::add_record).
    pub async fn delete_record(
        &self,
        record_id: RecordId,
        local_only: bool,
    ) -> Result<(), PeerError> {
        self.call(DeleteRecord {
            record_id,
            local_only,
        })
        .await?
    }

    /// `PeerGraphGetRecord` (see [`GetRecord`]).
    ///
    /// # Errors
    /// `PEER_E_RECORD_NOT_FOUND`.
    pub async fn get_record(&self, record_id: RecordId) -> Result<Record, PeerError> {
        self.call(GetRecord { record_id }).await?
    }

    /// `PeerGraphEnumRecords` (see [`EnumRecords`]): the live records of `record_type`
    /// and by `creator`, each filter optional.
    ///
    /// # Errors
    /// Only the common codes, and `PEER_E_INVALID_DATABASE` for a damaged record.
    pub async fn enum_records(
        &self,
        record_type: Option<RecordType>,
        creator: Option<PeerId>,
    ) -> Result<Vec<Record>, PeerError> {
        self.call(EnumRecords {
            record_type,
            creator,
        })
        .await?
    }

    /// `PeerGraphSearchRecords` (see [`SearchRecords`]).
    ///
    /// # Errors
    /// `PEER_E_INVALID_SEARCH`.
    pub async fn search_records(&self, criteria: &str) -> Result<Vec<Record>, PeerError> {
        self.call(SearchRecords {
            criteria: criteria.to_owned(),
        })
        .await?
    }

    /// `PeerGraphValidateDeferredRecords` (see [`ValidateDeferredRecords`]).
    ///
    /// # Errors
    /// `E_INVALIDARG` (no ids), `PEER_E_GRAPH_NOT_READY`.
    pub async fn validate_deferred_records(
        &self,
        record_ids: Vec<RecordId>,
    ) -> Result<(), PeerError> {
        self.call(ValidateDeferredRecords { record_ids }).await?
    }

    /// `PeerGraphGetProperties`.
    ///
    /// # Errors
    /// Only the common codes.
    pub async fn properties(&self) -> Result<GraphProperties, PeerError> {
        self.call(GetProperties).await?
    }

    /// `PeerGraphSetProperties` (see [`SetProperties`]).
    ///
    /// # Errors
    /// `E_INVALIDARG`, `E_ACCESSDENIED`, `PEER_E_GRAPH_NOT_READY`.
    pub async fn set_properties(&self, properties: GraphProperties) -> Result<(), PeerError> {
        self.call(SetProperties { properties }).await?
    }

    /// `PeerGraphExportDatabase` (see [`ExportDatabase`]): how many records the file holds.
    ///
    /// # Errors
    /// `PEER_E_DATABASE_NOT_PRESENT`, `PEER_E_NOT_FOUND`, `PEER_E_DISK_FULL`,
    /// `E_ACCESSDENIED`, `E_FAIL`.
    pub async fn export_database(&self, path: impl Into<PathBuf>) -> Result<u64, PeerError> {
        self.call(ExportDatabase { path: path.into() }).await?
    }

    /// `PeerGraphImportDatabase` (see [`ImportDatabase`]): how many records were taken.
    ///
    /// # Errors
    /// `PEER_E_GRAPH_IN_USE`, `PEER_E_INVALID_DATABASE`, `PEER_E_NOT_FOUND`,
    /// `E_ACCESSDENIED`, `PEER_E_DATABASE_NOT_PRESENT`.
    pub async fn import_database(&self, path: impl Into<PathBuf>) -> Result<u64, PeerError> {
        self.call(ImportDatabase { path: path.into() }).await?
    }
}
