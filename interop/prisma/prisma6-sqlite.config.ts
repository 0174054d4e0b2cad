// Prisma 6 on SQLite: `migrate diff` through the WebAssembly schema engine and the libsql
// adapter on an in-memory database, without Prisma's native engines.
import { defineConfig } from "prisma6/config";
import { PrismaLibSql } from "@prisma/adapter-libsql";

export default defineConfig({
  experimental: { adapter: true },
  engine: "js",
  adapter: async () => new PrismaLibSql({ url: ":memory:" }),
  schema: "work-sqlite/schema6.prisma",
});
