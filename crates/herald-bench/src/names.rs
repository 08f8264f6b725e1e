//! The names `--only` accepts and the report shows, in one place the integration test reads too
//! (`tests/quick.rs` includes this file).

/// Every row of the main table, in the order they run. The `_postgres` rows run only with
/// `--postgres`.
pub(crate) const ROWS: &[&str] = &[
    "raw_insert",
    "save_no_receivers",
    "raw_get",
    "get",
    "raw_insert_with_task",
    "save_background",
    "save_pre_post",
    "update_pre_post",
    "update_changes",
    "bulk_create_1000",
    "raw_bulk_update_1000",
    "raw_bulk_update_1000_values",
    "bulk_update_1000",
    "bulk_update_1000_one_by_one",
    "atomic_1000",
    "atomic_1000_pipelined",
    "atomic_1000_in_transaction",
    "raw_query_filtered",
    "query_filtered",
    "raw_query_count",
    "read_query_count",
    "query_count",
    "tasks_drain_sqlite",
    "tasks_drain_floor_sqlite",
    "commit_to_start_sqlite",
    "rescue_after_death",
    "tasks_drain_postgres",
    "tasks_drain_floor_postgres",
    "commit_to_start_postgres",
    "rescue_after_death_postgres",
];

/// The `--only` name of the seed's "Performance Comparison" table.
pub(crate) const SEED: &str = "seed";

/// The seed table's patterns, in the order they run and print: the seed's four (which Django runs
/// too), then the two heavy ones as async receivers awaiting a timer.
pub(crate) const SEED_PATTERNS: &[&str] = &[
    "heavy_pre_save_blocking",
    "light_pre_save",
    "heavy_post_save_background",
    "heavy_post_save_blocking",
    "heavy_pre_save_async",
    "heavy_post_save_async",
];

/// The `--only` name of the isolation table.
pub(crate) const ISOLATION: &str = "isolation";

/// The isolation table's cases: what slows the fifth client's saves.
pub(crate) const ISOLATION_CASES: &[&str] = &[
    "none",
    "sync_pre_save",
    "async_pre_save",
    "sync_post_save",
    "on_commit",
];
