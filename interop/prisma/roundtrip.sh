#!/usr/bin/env bash
# The Prisma side of the interop test, run by crates/outbox-cli/tests/prisma.rs.
#   roundtrip.sh prepare OUTBOX_BIN   schema.prisma = header + `outbox schema print --format
#                                     prisma`; Prisma's own DDL for it plus the printed SQL
#                                     block, applied with psql; the Prisma 7 client generated
#   roundtrip.sh write                a Prisma Client transaction writes AuthLog + OutboxEvent
#   roundtrip.sh prepare-sqlite OUTBOX_BIN   the same on the SQLite file $SQLITE_FILE (Prisma's
#                                     DDL through the libsql adapter, applied with python3)
#   roundtrip.sh write-sqlite | read-sqlite ID   the SQLite app's transaction / read-back
#   roundtrip.sh prepare-mysql OUTBOX_BIN    the same on the MySQL/MariaDB database of
#                                     DATABASE_URL: the Prisma 7 client generated for the
#                                     printed models (which checks them); Prisma's DDL for
#                                     them (prisma-mysql-ddl.sql, see there why it is kept)
#                                     plus the printed SQL block, applied with `mysql`
#   roundtrip.sh write-mysql | read-mysql ID     the MySQL app's transaction / read-back
# Needs DATABASE_URL (PostgreSQL or MySQL/MariaDB) or SQLITE_FILE, and `npm ci` done in this folder. Prisma's
# native engines are never downloaded: the /dev/null paths below make both CLIs skip them.
set -euo pipefail
cd "$(dirname "$0")"

case "${1:-}" in
  prepare-sqlite)
    bin=${2:?usage: roundtrip.sh prepare-sqlite OUTBOX_BIN}
    : "${SQLITE_FILE:?set SQLITE_FILE}"
    mkdir -p work-sqlite
    { cat header-sqlite.prisma; "$bin" --database-url "sqlite:$SQLITE_FILE" schema print --format prisma; } > work-sqlite/schema.prisma
    # Prisma 6 wants a url in the datasource (never opened: the adapter is in memory).
    sed 's|^  provider = "sqlite"$|  provider = "sqlite"\n  url      = "file:./unused.db"|' \
      work-sqlite/schema.prisma > work-sqlite/schema6.prisma
    PRISMA_QUERY_ENGINE_LIBRARY=/dev/null node node_modules/prisma6/build/index.js migrate diff \
      --config prisma6-sqlite.config.ts --from-empty --to-schema-datamodel work-sqlite/schema6.prisma \
      --script -o work-sqlite/prisma.sql
    sed -n '/^\/\/ BEGIN outbox SQL$/,/^\/\/ END outbox SQL$/{//!p}' work-sqlite/schema.prisma \
      | sed 's|^// ||' > work-sqlite/extra.sql
    cat work-sqlite/prisma.sql work-sqlite/extra.sql > work-sqlite/migration.sql
    python3 -c 'import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.executescript(open(sys.argv[2]).read()); c.close()' \
      "$SQLITE_FILE" work-sqlite/migration.sql
    PRISMA_SCHEMA_ENGINE_BINARY=/dev/null node node_modules/prisma/build/index.js generate \
      --config prisma-sqlite.config.ts >/dev/null
    ;;
  prepare-mysql)
    bin=${2:?usage: roundtrip.sh prepare-mysql OUTBOX_BIN}
    : "${DATABASE_URL:?set DATABASE_URL}"
    mkdir -p work-mysql
    { cat header-mysql.prisma; "$bin" --database-url "$DATABASE_URL" schema print --format prisma; } > work-mysql/schema.prisma
    PRISMA_SCHEMA_ENGINE_BINARY=/dev/null node node_modules/prisma/build/index.js generate \
      --config prisma-mysql.config.ts >/dev/null
    sed -n '/^\/\/ BEGIN outbox SQL$/,/^\/\/ END outbox SQL$/{//!p}' work-mysql/schema.prisma \
      | sed 's|^// ||' > work-mysql/extra.sql
    cat prisma-mysql-ddl.sql work-mysql/extra.sql > work-mysql/migration.sql
    # mysql://user[:pass]@host:port/db → the mysql client's options.
    url=${DATABASE_URL#*://}
    creds=${url%%@*}; rest=${url#*@}; hostport=${rest%%/*}; db=${rest#*/}
    user=${creds%%:*}; pass=""; [ "$creds" != "$user" ] && pass=${creds#*:}
    host=${hostport%%:*}; port=3306; [ "$hostport" != "$host" ] && port=${hostport#*:}
    MYSQL_PWD="$pass" mysql --protocol=TCP -h "$host" -P "$port" -u "$user" "$db" < work-mysql/migration.sql
    ;;
  write-mysql)
    : "${DATABASE_URL:?set DATABASE_URL}"
    node node_modules/tsx/dist/cli.mjs write-mysql.ts write
    ;;
  read-mysql)
    : "${DATABASE_URL:?set DATABASE_URL}"
    node node_modules/tsx/dist/cli.mjs write-mysql.ts read "${2:?usage: roundtrip.sh read-mysql ID}"
    ;;
  write-sqlite)
    node node_modules/tsx/dist/cli.mjs write-sqlite.ts write
    ;;
  read-sqlite)
    node node_modules/tsx/dist/cli.mjs write-sqlite.ts read "${2:?usage: roundtrip.sh read-sqlite ID}"
    ;;
  prepare)
    : "${DATABASE_URL:?set DATABASE_URL}"
    bin=${2:?usage: roundtrip.sh prepare OUTBOX_BIN}
    mkdir -p work
    { cat header.prisma; "$bin" schema print --format prisma; } > work/schema.prisma
    # Prisma 6 wants the URL in the datasource; Prisma 7 refuses it there.
    sed '/^datasource db {/,/^}/ s|^  provider = "postgresql"$|  provider = "postgresql"\n  url      = env("DATABASE_URL")|' \
      work/schema.prisma > work/schema6.prisma
    PRISMA_QUERY_ENGINE_LIBRARY=/dev/null node node_modules/prisma6/build/index.js migrate diff \
      --config prisma6.config.ts --from-empty --to-schema-datamodel work/schema6.prisma \
      --script -o work/prisma.sql
    # What a Prisma user appends to the migration made with --create-only.
    sed -n '/^\/\/ BEGIN outbox SQL$/,/^\/\/ END outbox SQL$/{//!p}' work/schema.prisma \
      | sed 's|^// ||' > work/extra.sql
    cat work/prisma.sql work/extra.sql > work/migration.sql
    psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -1 -q -f work/migration.sql
    PRISMA_SCHEMA_ENGINE_BINARY=/dev/null node node_modules/prisma/build/index.js generate >/dev/null
    ;;
  write)
    : "${DATABASE_URL:?set DATABASE_URL}"
    node node_modules/tsx/dist/cli.mjs write.ts
    ;;
  *)
    echo "usage: roundtrip.sh prepare OUTBOX_BIN | write | prepare-sqlite OUTBOX_BIN | write-sqlite | read-sqlite ID | prepare-mysql OUTBOX_BIN | write-mysql | read-mysql ID" >&2
    exit 2
    ;;
esac
