// A producer as a Prisma app writes it: a business row and its outbox event in one
// transaction. Prints the event id.
import { PrismaPg } from "@prisma/adapter-pg";
import { PrismaClient } from "./generated/prisma/client.ts";

const connectionString = process.env.DATABASE_URL;
if (!connectionString) throw new Error("DATABASE_URL is not set");

const prisma = new PrismaClient({ adapter: new PrismaPg({ connectionString }) });

try {
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
} finally {
  await prisma.$disconnect();
}
