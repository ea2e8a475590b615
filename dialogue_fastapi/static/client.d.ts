// Type declarations for the dialogue-fastapi browser client (client.js, protocol v1).

export type ConnectionState = "connecting" | "connected" | "reconnecting" | "closed";
export type Subscriptions = string[] | "*";

export interface Position {
  seq: number;
  epoch: string | null;
}

/** One event (protocol section 1). */
export interface EventMessage<T = unknown> {
  op: "event";
  room: string;
  event: string;
  data: T;
  /** The sender's user id, or "server". */
  from: string;
  /** Milliseconds since the Unix epoch. */
  ts: number;
  seq: number;
  meta: Record<string, unknown>;
  /** Set by the client on events that came in a join reply (history, or recovery after a reconnect). */
  replayed?: boolean;
}

/** The room info object (protocol section 4). */
export interface RoomInfo {
  id: string;
  name: string;
  description: string | null;
  max_size: number | null;
  size: number;
  events: string[];
  default_subscriptions: string[];
  channels: string[];
  created_by: string | null;
}

export interface PresenceUser {
  user_id: string;
  client_id: string;
}

export interface PresenceFrame extends PresenceUser {
  op: "presence_join" | "presence_leave";
  room: string;
}

export interface DirectFrame<T = unknown> {
  op: "direct";
  event: string;
  data: T;
  from: string;
  ts: number;
}

export interface PublishAck {
  seq: number | null;
  ts: number | null;
  /** A retried publish with the same idempotency key. */
  duplicate?: boolean;
  /** A middleware dropped the event. */
  dropped?: boolean;
}

/** One push registration of the user, from `GET /push/subscriptions` (keys never included). */
export interface PushRegistration {
  id: string;
  kind: "webpush" | "fcm" | "apns";
  /** The Web Push endpoint, or the token shortened. */
  target: string;
  rooms: string[];
  /** Seconds since the epoch. */
  created_at: number;
  last_success_at: number | null;
  /** Consecutive failed sends. */
  failures: number;
}

export interface PushRegistered {
  id: string;
  /** false: the endpoint was registered already and was updated. */
  created: boolean;
  subscription: PushSubscription;
}

export interface ResetInfo extends Position {
  previous: Position;
}

export interface StateInfo {
  code?: number;
  reason?: string;
}

export interface ConnectOptions {
  /**
   * The application's credentials. A function is called before each (re)connect
   * and, by default, its result is traded for a connection ticket (see `ticket`);
   * a string is sent as `?token=` (it then shows in access logs).
   */
  token?: string | null | (() => string | null | undefined | Promise<string | null | undefined>);
  /**
   * Connect with a single-use ticket (`?ticket=`) instead of `?token=`. `true`: get
   * one from `POST /tickets` before each (re)connect, with `token` as
   * `Authorization: Bearer` and the page's cookies; a function: it returns the
   * ticket. Default: on when `token` is a function.
   */
  ticket?: boolean | (() => string | Promise<string>);
  /** The POST /tickets URL; default: next to the /ws URL. */
  ticketUrl?: string;
  /** `fetch` credentials of the ticket request; default "same-origin". */
  credentials?: "omit" | "same-origin" | "include";
  reconnect?: boolean;
  /** Milliseconds to wait for a reply (and for the hello). */
  ackTimeout?: number;
  backoffInitial?: number;
  backoffMax?: number;
  /** Seconds between pings; default: the server's hello; 0: none. */
  heartbeat?: number;
}

export declare class DialogueError extends Error {
  constructor(code: string, message: string, extra?: Record<string, unknown>);
  /** A protocol error code, or TIMEOUT / UNAVAILABLE from the client. */
  readonly code: string;
  readonly details?: Array<{ loc: Array<string | number>; msg: string; type: string }>;
  /** Seconds, for RATE_LIMITED. */
  readonly retryAfter?: number;
  readonly reason?: string;
  readonly correlationId?: string;
  /** The WebSocket close code when a connection attempt was refused. */
  readonly closeCode?: number;
  /** The whole error object. */
  readonly error: Record<string, unknown>;
  static from(error: Record<string, unknown>): DialogueError;
}

export interface Room {
  readonly id: string;
  readonly info: RoomInfo | null;
  readonly subscriptions: Subscriptions | null;
  readonly closed: boolean;
  readonly position: Position;
  on<T = unknown>(event: string, fn: (message: EventMessage<T>) => void): () => void;
  off(event: string, fn: (message: EventMessage<any>) => void): void;
  onReset(fn: (info: ResetInfo) => void): () => void;
  publish(event: string, data: unknown, options?: { meta?: Record<string, unknown>; idempotencyKey?: string }): Promise<PublishAck>;
  subscribe(events: Subscriptions): Promise<Subscriptions | null>;
  unsubscribe(events: string[]): Promise<Subscriptions | null>;
  history(query?: { event?: string; limit?: number; before?: number; after?: number }): Promise<EventMessage[]>;
  presence(): Promise<{ count: number; users: PresenceUser[] }>;
  leave(): Promise<void>;
}

export interface Client {
  readonly url: string;
  readonly state: ConnectionState;
  readonly userId: string | null;
  readonly clientId: string | null;
  readonly hello: Record<string, unknown> | null;
  readonly closeCode: number | null;
  readonly closeReason: string;
  readonly joined: Map<string, Room>;
  join(roomId: string, options?: { subscriptions?: Subscriptions; history?: number }): Promise<Room>;
  room(roomId: string): Room | null;
  rooms(): Promise<RoomInfo[]>;
  createRoom(
    id: string,
    name: string,
    options?: {
      description?: string;
      maxSize?: number;
      events?: string[];
      /** Send presence_join / presence_leave frames to the room's members. */
      presenceEvents?: boolean;
      /** Send the newest N events in the join reply. */
      syncHistoryOnJoin?: number;
    },
  ): Promise<RoomInfo>;
  deleteRoom(id: string): Promise<void>;
  /**
   * Call the REST API beside the WebSocket endpoint (`/dialogue/ws` -> `/dialogue` + path)
   * with this client's `token` as `Authorization: Bearer`; null for 204. Rejects with a
   * DialogueError (the server's code, or `NOT_FOUND` / `UNAVAILABLE`).
   */
  fetchRest<T = Record<string, unknown>>(
    path: string,
    options?: { method?: string; body?: unknown },
  ): Promise<T | null>;
  /** The server's VAPID public key (base64url); `NOT_FOUND` when the server has no push. */
  vapidPublicKey(): Promise<string>;
  /**
   * Register for Web Push: a ServiceWorkerRegistration is subscribed with the server's
   * VAPID key (or its existing subscription reused), a PushSubscription is posted as is
   * (`toJSON()` plus `kind: "webpush"`). `rooms`: rooms to be notified of besides the
   * user's own.
   */
  registerPush(
    target: ServiceWorkerRegistration | PushSubscription,
    options?: { rooms?: string[] },
  ): Promise<PushRegistered>;
  pushRegistrations(): Promise<PushRegistration[]>;
  unregisterPush(id: string): Promise<void>;
  onRoomCreated(fn: (info: RoomInfo) => void): () => void;
  onRoomDeleted(fn: (roomId: string) => void): () => void;
  onDirect(fn: (frame: DirectFrame) => void): () => void;
  onPresence(fn: (frame: PresenceFrame) => void): () => void;
  onState(fn: (state: ConnectionState, info: StateInfo) => void): () => void;
  onError(fn: (error: DialogueError, frame: Record<string, unknown>) => void): () => void;
  request<T = Record<string, unknown>>(op: string, fields?: Record<string, unknown>): Promise<T>;
  close(): Promise<void>;
}

export declare function connect(url: string, options?: ConnectOptions): Promise<Client>;
/**
 * A single-use connection ticket from `POST /tickets` (`url`: the /ws or /sse
 * endpoint, or /tickets), for `/ws?ticket=...` or `/sse?ticket=...`.
 */
export declare function fetchTicket(
  url: string,
  options?: { token?: string | null; credentials?: "omit" | "same-origin" | "include" },
): Promise<string>;
export default connect;
