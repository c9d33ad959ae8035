/* The memory database's schema, as numbered migrations (PRAGMA user_version
 * counts how many ran). Append only: a released migration never changes. */
#include "memory/memstore.h"

const char *const memstore_migrations[] = {
    /* 1: the knowledge graph, its search indexes, scope bookkeeping */
    "CREATE TABLE entities ("
    "  id INTEGER PRIMARY KEY,"
    "  scope TEXT NOT NULL,"
    "  name TEXT NOT NULL,"
    "  type TEXT NOT NULL,"
    "  confidence REAL NOT NULL DEFAULT 1.0 CHECK (confidence >= 0 AND confidence <= 1),"
    "  metadata TEXT NOT NULL DEFAULT '{}',"
    "  created_at INTEGER NOT NULL,"
    "  updated_at INTEGER NOT NULL,"
    "  version INTEGER NOT NULL DEFAULT 1,"
    "  created_by TEXT NOT NULL,"
    "  UNIQUE (scope, name));"
    "CREATE INDEX entities_updated ON entities(scope, updated_at);"
    "CREATE INDEX entities_creator ON entities(created_by);"
    /* observations are append-only facts; removing one stamps removed_at so
     * older versions can still be shown */
    "CREATE TABLE observations ("
    "  id INTEGER PRIMARY KEY,"
    "  entity_id INTEGER NOT NULL REFERENCES entities(id) ON DELETE CASCADE,"
    "  text TEXT NOT NULL,"
    "  created_at INTEGER NOT NULL,"
    "  removed_at INTEGER);"
    "CREATE INDEX observations_entity ON observations(entity_id, id);"
    "CREATE INDEX observations_text ON observations(entity_id, text);"
    /* one row per version of an entity's own fields */
    "CREATE TABLE entity_versions ("
    "  entity_id INTEGER NOT NULL REFERENCES entities(id) ON DELETE CASCADE,"
    "  version INTEGER NOT NULL,"
    "  type TEXT NOT NULL,"
    "  confidence REAL NOT NULL,"
    "  metadata TEXT NOT NULL,"
    "  changed_at INTEGER NOT NULL,"
    "  changed_by TEXT NOT NULL,"
    "  PRIMARY KEY (entity_id, version)) WITHOUT ROWID;"
    "CREATE TABLE relations ("
    "  id INTEGER PRIMARY KEY,"
    "  from_id INTEGER NOT NULL REFERENCES entities(id) ON DELETE CASCADE,"
    "  to_id INTEGER NOT NULL REFERENCES entities(id) ON DELETE CASCADE,"
    "  type TEXT NOT NULL,"
    "  strength REAL NOT NULL DEFAULT 1.0 CHECK (strength >= 0 AND strength <= 1),"
    "  created_at INTEGER NOT NULL,"
    "  created_by TEXT NOT NULL,"
    "  UNIQUE (from_id, to_id, type));"
    "CREATE INDEX relations_to ON relations(to_id);"
    /* float32 little-endian blobs, tagged with the embedder that made them */
    "CREATE TABLE embeddings ("
    "  entity_id INTEGER PRIMARY KEY REFERENCES entities(id) ON DELETE CASCADE,"
    "  embedder TEXT NOT NULL,"
    "  dim INTEGER NOT NULL,"
    "  vector BLOB NOT NULL);"
    /* rowid = entities.id; kept in step by the store */
    "CREATE VIRTUAL TABLE entities_fts USING fts5(name, type, body, tokenize='unicode61');"
    /* how many entities hold each term: lets a search leave out the words
     * too common to rank anything (see fts_query in memstore.c) */
    "CREATE VIRTUAL TABLE entities_fts_vocab USING fts5vocab(entities_fts, 'row');"
    "CREATE TABLE scope_violations ("
    "  id INTEGER PRIMARY KEY,"
    "  at INTEGER NOT NULL,"
    "  agent TEXT NOT NULL,"
    "  scope TEXT NOT NULL,"
    "  operation TEXT NOT NULL,"
    "  detail TEXT NOT NULL);"
    "CREATE INDEX scope_violations_at ON scope_violations(at);"
    /* operator overrides of an agent's scope (memory scope-reset) */
    "CREATE TABLE scope_overrides ("
    "  agent TEXT PRIMARY KEY,"
    "  scope TEXT NOT NULL CHECK (scope IN ('agent','workspace','global')),"
    "  workspace TEXT,"
    "  set_at INTEGER NOT NULL);"
    "CREATE TABLE meta ("
    "  key TEXT PRIMARY KEY,"
    "  value TEXT NOT NULL);",
};
const int memstore_migration_count =
    (int)(sizeof memstore_migrations / sizeof memstore_migrations[0]);
