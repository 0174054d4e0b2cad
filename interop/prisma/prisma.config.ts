// Prisma 7: generates the client used by write.ts.
import { defineConfig } from "prisma/config";

export default defineConfig({
  schema: "work/schema.prisma",
  datasource: {
    url: process.env.DATABASE_URL ?? "",
  },
});
