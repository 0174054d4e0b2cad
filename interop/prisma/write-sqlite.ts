// A Prisma app on SQLite (Prisma 7, libsql driver adapter, its default ISO-8601 timestamps).
//   write-sqlite.ts write       a business row and its outbox event in one transaction;
//                               prints the event id
//   write-sqlite.ts read ID     the event as Prisma Client reads it back, as JSON
import { PrismaLibSql } from "@prisma/adapter-libsql";
import { PrismaClient } from "./generated/prisma-sqlite/client.ts";

const file = process.env.SQLITE_FILE;
if (!file) throw new Error("SQLITE_FILE is not set");

const prisma = new PrismaClient({ adapter: new PrismaLibSql({ url: `file:${file}` }) });

try {
  if (process.argv[2] === "read") {
    const event = await prisma.outboxEvent.findUniqueOrThrow({ where: { id: process.argv[3] } });
    console.log(JSON.stringify(event));
  } else {
    const [, event] = await prisma.$transaction([
      prisma.authLog.create({ data: { userId: "user-1" } }),
      prisma.outboxEvent.create({
        data: {
          eventName: "PasswordUserLoggedInEvent",
          eventType: "auth.login.success",
          aggregateId: "user-1",
          routingKey: "audit.record-auth-log",
          payload: { ip: "10.0.0.1" },
        },
      }),
    ]);
    console.log(event.id);
  }
} finally {
  await prisma.$disconnect();
}
