// Prisma 7 on SQLite: generates the client used by write-sqlite.ts.
import { defineConfig } from "prisma/config";

export default defineConfig({
  schema: "work-sqlite/schema.prisma",
  datasource: {
    url: `file:${process.env.SQLITE_FILE ?? "unused.db"}`,
  },
});
