#!/usr/bin/env bash
# The Prisma side of the interop test, run by crates/outbox-cli/tests/prisma.rs.
#   roundtrip.sh prepare OUTBOX_BIN   schema.prisma = header + `outbox schema print --format
#                                     prisma`; Prisma's own DDL for it plus the printed SQL
#                                     block, applied with psql; the Prisma 7 client generated
#   roundtrip.sh write                a Prisma Client transaction writes AuthLog + OutboxEvent
# Needs DATABASE_URL and `npm ci` done in this folder. Prisma's native engines are never
# downloaded: the /dev/null paths below make both CLIs skip them.
set -euo pipefail
cd "$(dirname "$0")"
: "${DATABASE_URL:?set DATABASE_URL}"

case "${1:-}" in
  prepare)
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
    node node_modules/tsx/dist/cli.mjs write.ts
    ;;
  *)
    echo "usage: roundtrip.sh prepare OUTBOX_BIN | write" >&2
    exit 2
    ;;
esac
