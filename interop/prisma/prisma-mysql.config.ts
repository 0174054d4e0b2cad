// Prisma 7 on MySQL / MariaDB: generates the client used by write-mysql.ts (and with it
// checks the printed models).
import { defineConfig } from "prisma/config";

export default defineConfig({
  schema: "work-mysql/schema.prisma",
  datasource: {
    url: process.env.DATABASE_URL ?? "mysql://unused@127.0.0.1/unused",
  },
});
