// A Prisma app on MySQL / MariaDB (Prisma 7, the mariadb driver adapter).
//   write-mysql.ts write       a business row and its outbox event in one transaction;
//                              prints the event id
//   write-mysql.ts read ID     the event as Prisma Client reads it back, as JSON
import { PrismaMariaDb } from "@prisma/adapter-mariadb";
import { PrismaClient } from "./generated/prisma-mysql/client.ts";

const url = process.env.DATABASE_URL;
if (!url) throw new Error("DATABASE_URL is not set");

const prisma = new PrismaClient({ adapter: new PrismaMariaDb(url.replace(/^mysql:/, "mariadb:")) });

try {
  if (process.argv[2] === "read") {
    const event = await prisma.outboxEvent.findUniqueOrThrow({ where: { id: process.argv[3] } });
    console.log(JSON.stringify(event, (_, v) => (typeof v === "bigint" ? v.toString() : v)));
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
