// Prisma 6: `migrate diff` through the WebAssembly schema engine and the pg adapter, which
// works without downloading Prisma's native engines.
import { defineConfig } from "prisma6/config";
import { PrismaPg } from "@prisma/adapter-pg";

const url = process.env.DATABASE_URL ?? "";

export default defineConfig({
  experimental: { adapter: true },
  engine: "js",
  adapter: async () => new PrismaPg({ connectionString: url, allowExitOnIdle: true }),
  schema: "work/schema6.prisma",
});
