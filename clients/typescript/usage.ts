// Type-checked by tests/test_clients.py against the types openapi-typescript generates from the
// served document (./api.d.ts beside it): calls a TypeScript caller would write.
import type { components, operations, paths } from "./api";

type NotificationCreate = components["schemas"]["NotificationCreate"];
type NotificationView = components["schemas"]["NotificationView"];
type ErrorBody = components["schemas"]["ErrorBody"];
type ListQuery = NonNullable<operations["listNotifications"]["parameters"]["query"]>;
type Accepted = paths["/api/v1/notifications"]["post"]["responses"][202]["content"]["application/json"];
type InboxPage = operations["listInboxItems"]["responses"][200]["content"]["application/json"];

const request: NotificationCreate = {
  channels: ["EMAIL", "IN_APP"],
  priority: "HIGH",
  recipientEmail: "ana@example.com",
  userId: "ana",
  subject: "Your order shipped",
  body: "It arrives on Thursday.",
  data: { orderId: 1234 },
};

// @ts-expect-error FAX is no channel: the generated types must refuse it
const notAChannel: NotificationCreate = { channels: ["FAX"], body: "x" };

// @ts-expect-error channels is required
const noChannels: NotificationCreate = { body: "x" };

const query: ListQuery = { status: "SENT", channel: "EMAIL", type: "TRANSACTIONAL", limit: 10 };

async function call<T>(base: string, key: string, method: string, path: string, body?: unknown): Promise<T> {
  const response = await fetch(`${base}${path}`, {
    method,
    headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) {
    const error = (await response.json()) as ErrorBody;
    const fields = (error.error.fields ?? []).map((f) => `${f.field}: ${f.rule}`);
    throw new Error(`${error.error.code}: ${error.error.message} ${fields.join(", ")}`);
  }
  return (await response.json()) as T;
}

export async function sendAndList(base: string, key: string): Promise<string[]> {
  const created = await call<Accepted>(base, key, "POST", "/api/v1/notifications", request);
  const read = await call<NotificationView>(base, key, "GET", `/api/v1/notifications/${created.id}`);
  const params = new URLSearchParams({ status: query.status ?? "SENT", limit: String(query.limit) });
  const page = await call<components["schemas"]["NotificationPage"]>(base, key, "GET", `/api/v1/notifications?${params}`);
  const inbox = await call<InboxPage>(base, key, "GET", "/api/v1/users/ana/inbox?unread=true");
  const unread: number = inbox.unreadCount;
  return [
    ...read.deliveries.map((d) => `${d.channel}:${d.status}:${d.attempts}`),
    ...page.items.map((n) => n.id),
    `unread ${unread}`,
    String((notAChannel.body ?? "").length + (noChannels.body ?? "").length),
  ];
}
