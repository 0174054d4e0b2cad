//! The relay's reads of `information_schema` (schema checks, drift, app-owned tables).
//!
//! Each one names the schema through a column the server can use to open that one database
//! only: on MariaDB, `TRIGGERS.TRIGGER_SCHEMA` and `TABLE_CONSTRAINTS.CONSTRAINT_SCHEMA` make
//! it open every table of every database on the server (and wait behind any DDL running in
//! any of them), where `EVENT_OBJECT_SCHEMA` and `TABLE_SCHEMA` keep it to one.

pub const HAS_TABLE: &str =
    "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?";

pub const DRIFT_COLUMNS: &str =
    "SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COALESCE(COLUMN_DEFAULT, 'NULL'), EXTRA
       FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME <> ?";

pub const DRIFT_INDEXES: &str =
    "SELECT TABLE_NAME, INDEX_NAME, NON_UNIQUE, GROUP_CONCAT(COLUMN_NAME ORDER BY SEQ_IN_INDEX)
       FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? AND TABLE_NAME <> ?
      GROUP BY TABLE_NAME, INDEX_NAME, NON_UNIQUE";

pub const DRIFT_CHECKS: &str =
    "SELECT TABLE_NAME, CONSTRAINT_NAME FROM information_schema.TABLE_CONSTRAINTS
      WHERE TABLE_SCHEMA = ? AND CONSTRAINT_TYPE = 'CHECK' AND TABLE_NAME <> ?";

pub const DRIFT_TRIGGERS: &str =
    "SELECT EVENT_OBJECT_TABLE, TRIGGER_NAME, ACTION_TIMING, EVENT_MANIPULATION, ACTION_STATEMENT
       FROM information_schema.TRIGGERS WHERE EVENT_OBJECT_SCHEMA = ?";

pub const ADOPT_COLUMNS: &str =
    "SELECT TABLE_NAME, COLUMN_NAME, IS_NULLABLE, LOWER(DATA_TYPE), COLUMN_TYPE, EXTRA,
            CHARACTER_MAXIMUM_LENGTH, CHARACTER_SET_NAME, COLLATION_NAME
       FROM information_schema.COLUMNS
      WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME, ORDINAL_POSITION";

pub const ADOPT_INDEXES: &str =
    "SELECT TABLE_NAME, INDEX_NAME, NON_UNIQUE, COLUMN_NAME FROM information_schema.STATISTICS
      WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX";

pub const ADOPT_TRIGGERS: &str =
    "SELECT EVENT_OBJECT_TABLE, ACTION_STATEMENT FROM information_schema.TRIGGERS
      WHERE EVENT_OBJECT_SCHEMA = ? AND EVENT_MANIPULATION = 'INSERT'";

/// InnoDB's estimate of a table's rows.
pub const TABLE_ROWS: &str =
    "SELECT CAST(TABLE_ROWS AS SIGNED) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?";

/// Every statement above with the number of `?` it takes (all are the database name but the
/// second of the drift reads, a table name): checked with EXPLAIN by the store's tests.
pub const ALL: &[(&str, usize)] = &[
    (HAS_TABLE, 2),
    (TABLE_ROWS, 2),
    (DRIFT_COLUMNS, 2),
    (DRIFT_INDEXES, 2),
    (DRIFT_CHECKS, 2),
    (DRIFT_TRIGGERS, 1),
    (ADOPT_COLUMNS, 1),
    (ADOPT_INDEXES, 1),
    (ADOPT_TRIGGERS, 1),
];
