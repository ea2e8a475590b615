// dialogue-fastapi browser client: an ES module, no build step, no dependencies.
//
//   import { connect } from "/dialogue/client.js";
//   const client = await connect("/dialogue/ws", { token: () => auth.getAccessToken() });
//   const room = await client.join("lobby");
//   room.on("message", (msg) => console.log(msg.from, msg.data));
//   await room.publish("message", { text: "hi" });
//
// Wire protocol v1 (docs/protocol.md). After an unexpected close the client
// reconnects with full-jitter exponential backoff, rejoins every room from its
// last position and delivers what was missed exactly once, in seq order.
//
// Credentials: a browser cannot set headers on a WebSocket, so they travel in
// the URL. With `token` as a function (or `ticket: true`) the client trades the
// token (sent as `Authorization: Bearer` to POST /tickets) for a single-use
// ticket before each (re)connect and connects with `?ticket=`; a plain string
// `token` is sent as `?token=` as before (it then shows in access logs).

const NO_RECONNECT = new Set([1008, 4001, 4003, 4004, 4400]);
// Rejoin failures worth another connection; any other error loses the room.
const TRANSIENT = new Set(["UNAVAILABLE", "TIMEOUT", "INTERNAL", "RATE_LIMITED"]);
const REFUSALS = { 1008: "FORBIDDEN", 4001: "UNAUTHORIZED", 4003: "FORBIDDEN", 4004: "FORBIDDEN", 4400: "BAD_REQUEST" };

/** An error with a protocol code (`ROOM_FULL`, `VALIDATION_FAILED`, ...), `TIMEOUT` or `UNAVAILABLE`. */
export class DialogueError extends Error {
  constructor(code, message, extra = {}) {
    super(message);
    this.name = "DialogueError";
    this.code = code;
    this.details = extra.details;
    this.retryAfter = extra.retry_after ?? extra.retryAfter;
    this.reason = extra.reason;
    this.correlationId = extra.correlation_id;
    this.closeCode = extra.closeCode;
    this.error = { code, message, ...extra };
  }

  static from(error) {
    const { code = "INTERNAL", message = "unknown error", ...extra } = error || {};
    return new DialogueError(code, message, extra);
  }
}

function report(err) {
  if (typeof reportError === "function") reportError(err);
  else console.error(err);
}

function call(fn, ...args) {
  try {
    const result = fn(...args);
    if (result && typeof result.catch === "function") result.catch(report);
  } catch (err) {
    report(err);
  }
}

function listeners() {
  const set = new Set();
  return {
    add(fn) {
      set.add(fn);
      return () => set.delete(fn);
    },
    emit(...args) {
      for (const fn of [...set]) call(fn, ...args);
    },
  };
}

function absolute(url) {
  return new URL(url, typeof location !== "undefined" ? location.href : undefined);
}

// `credentials`: `{ ticket }` (a connection ticket) or `{ token }` (legacy `?token=`).
function wsUrl(url, credentials = {}) {
  const u = absolute(url);
  if (u.protocol === "http:") u.protocol = "ws:";
  else if (u.protocol === "https:") u.protocol = "wss:";
  if (credentials.ticket != null) {
    u.searchParams.delete("token");
    u.searchParams.set("ticket", credentials.ticket);
  } else if (credentials.token != null) {
    u.searchParams.set("token", credentials.token);
  }
  return u.toString();
}

// The POST /tickets endpoint beside a /ws or /sse endpoint (or the endpoint itself).
function ticketEndpoint(url) {
  const u = absolute(url);
  if (u.protocol === "ws:") u.protocol = "http:";
  else if (u.protocol === "wss:") u.protocol = "https:";
  u.pathname = u.pathname.replace(/\/(ws|sse|tickets)\/?$/, "") + "/tickets";
  u.search = u.hash = "";
  return u.toString();
}

const TICKET_REFUSALS = { 401: 4001, 403: 4003 }; // as close codes: no reconnect after these

// A REST path (e.g. "/push/subscriptions") under the prefix of a /ws or /sse endpoint.
function restUrl(url, path) {
  const u = absolute(url);
  if (u.protocol === "ws:") u.protocol = "http:";
  else if (u.protocol === "wss:") u.protocol = "https:";
  u.pathname = u.pathname.replace(/\/(ws|sse|tickets)\/?$/, "") + path;
  u.search = u.hash = "";
  return u.toString();
}

function base64UrlToBytes(text) {
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((text.length + 3) % 4);
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}

/**
 * A single-use connection ticket from the server's `POST /tickets`, for
 * `/ws?ticket=...` or `/sse?ticket=...`: credentials that may travel in a URL
 * (valid once, for seconds). `url` is the /ws or /sse endpoint, or /tickets
 * itself. `token` is sent as `Authorization: Bearer`; the page's cookies are
 * sent with `credentials` ("same-origin" by default). Rejects with a
 * DialogueError (`UNAUTHORIZED` when the server refused the credentials).
 */
export async function fetchTicket(url, { token, credentials = "same-origin" } = {}) {
  const headers = token != null ? { Authorization: `Bearer ${token}` } : {};
  let response;
  try {
    response = await fetch(ticketEndpoint(url), { method: "POST", headers, credentials });
  } catch (err) {
    throw new DialogueError("UNAVAILABLE", `could not get a ticket: ${err.message}`, { closeCode: 1006 });
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok || typeof body.ticket !== "string") {
    const error = body.error || {};
    throw new DialogueError(error.code || "UNAVAILABLE", error.message || `POST /tickets: ${response.status}`,
      { ...error, closeCode: TICKET_REFUSALS[response.status] ?? 1006 });
  }
  return body.ticket;
}

function defined(fields) {
  return Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== undefined && v !== null));
}

/** One joined room. Get it from `client.join(roomId)`. */
class Room {
  constructor(client, id) {
    this.id = id;
    this.info = null;
    this.subscriptions = null;
    this.closed = false;
    this._client = client;
    this._seq = null;
    this._epoch = null;
    this._excluded = new Set();
    this._handlers = new Map();
    this._resets = listeners();
    this._backlog = []; // until the app had a turn to add handlers after join()
  }

  /** The last position seen: `{seq, epoch}`. */
  get position() {
    return { seq: this._seq ?? 0, epoch: this._epoch };
  }

  /** Call `fn(message)` for `event` (`"*"`: every event); returns a function that removes it. */
  on(event, fn) {
    if (!this._handlers.has(event)) this._handlers.set(event, new Set());
    this._handlers.get(event).add(fn);
    return () => this.off(event, fn);
  }

  off(event, fn) {
    this._handlers.get(event)?.delete(fn);
  }

  /** Call `fn({seq, epoch, previous})` when a reconnect could not recover the missed events. */
  onReset(fn) {
    return this._resets.add(fn);
  }

  /** Publish; resolves to the ack `{seq, ts}`. */
  publish(event, data, { meta, idempotencyKey } = {}) {
    return this._request("publish", defined({ event, data, meta, idempotency_key: idempotencyKey }));
  }

  async subscribe(events) {
    const result = await this._request("subscribe", { events });
    this._setSubscriptions(result);
    return this.subscriptions;
  }

  async unsubscribe(events) {
    const result = await this._request("unsubscribe", { events });
    this._setSubscriptions(result);
    return this.subscriptions;
  }

  /** Stored events in ascending seq (not passed to handlers). */
  async history({ event, limit, before, after } = {}) {
    const result = await this._request("history", defined({ event, limit, before, after }));
    return result.events || [];
  }

  /** `{count, users: [{user_id, client_id}]}` */
  presence() {
    return this._request("presence", {});
  }

  async leave() {
    if (this.closed) return;
    this._close();
    this._client._rooms.delete(this.id);
    if (this._client.state !== "connected") return; // a reconnect will not rejoin it
    try {
      await this._client.request("leave", { room: this.id });
    } catch (err) {
      if (!(err instanceof DialogueError) || !["NOT_IN_ROOM", "UNAVAILABLE", "ROOM_NOT_FOUND"].includes(err.code)) throw err;
    }
  }

  // --- used by the client -----------------------------------------------

  _request(op, fields) {
    if (this._client.state === "closed") return Promise.reject(new DialogueError("UNAVAILABLE", "the client is closed"));
    if (this.closed) return Promise.reject(new DialogueError("NOT_IN_ROOM", `room '${this.id}' was left`));
    return this._client.request(op, { room: this.id, ...fields });
  }

  _setSubscriptions(result) {
    if (result.subscriptions !== undefined) this.subscriptions = result.subscriptions;
    this._excluded = new Set(result.excluded || []);
  }

  _since() {
    return this._epoch == null ? null : { seq: this._seq ?? 0, epoch: this._epoch };
  }

  // A join reply, applied as it arrives, before any later frame of the socket.
  _applyJoin(result, since) {
    if (result.room) this.info = result.room;
    const excluded = this._excluded;
    this._setSubscriptions(result);
    this._excluded = excluded; // a rejoin cannot carry exclusions; they are re-sent after it
    const pos = result.position || {};
    if (since && !result.recovered) {
      const previous = this.position;
      this._seq = pos.seq ?? 0;
      this._epoch = pos.epoch ?? null;
      this._queue({ reset: { seq: this._seq, epoch: this._epoch, previous } });
      return;
    }
    for (const message of result.events || []) this._deliver({ ...message, replayed: true });
    if (typeof pos.seq === "number" && (this._seq == null || pos.seq > this._seq)) this._seq = pos.seq;
    if (pos.epoch != null) this._epoch = pos.epoch;
  }

  _deliver(message) {
    if (typeof message.seq === "number") {
      if (this._seq != null && message.seq <= this._seq) return; // seen already
      this._seq = message.seq;
    }
    if (!this.closed && !this._excluded.has(message.event)) this._queue({ message });
  }

  _queue(item) {
    if (this.closed) return;
    if (this._backlog) this._backlog.push(item);
    else this._emit(item);
  }

  _start() {
    setTimeout(() => {
      const backlog = this._backlog || [];
      this._backlog = null;
      for (const item of backlog) if (!this.closed) this._emit(item);
    }, 0);
  }

  _emit({ message, reset }) {
    if (reset) {
      this._resets.emit(reset);
      return;
    }
    for (const key of message.event === "*" ? ["*"] : [message.event, "*"]) {
      for (const fn of [...(this._handlers.get(key) || [])]) call(fn, message);
    }
  }

  _close() {
    this.closed = true;
    this._backlog = null;
  }
}

/** A connection to a dialogue-fastapi WebSocket endpoint. Get one from `connect()`. */
class Client {
  constructor(url, options) {
    this.url = url;
    this.options = options;
    this.hello = null;
    this.closeCode = null;
    this.closeReason = "";
    this.state = "closed";
    this._ws = null;
    this._opening = null;
    this._nextId = 0;
    this._pending = new Map();
    this._rooms = new Map();
    this._joining = new Map();
    this._waiters = new Set();
    this._attempt = 0;
    this._sleep = null;
    this._heartbeat = null;
    this._closing = false;
    this._lastDisconnect = null;
    this._on = {
      state: listeners(), direct: listeners(), presence: listeners(), roomCreated: listeners(),
      roomDeleted: listeners(), error: listeners(),
    };
  }

  /** The authenticated user id (from the server's hello). */
  get userId() {
    return this.hello?.user_id ?? null;
  }

  /** This connection's id (a new one after each reconnect). */
  get clientId() {
    return this.hello?.client_id ?? null;
  }

  /** The rooms joined now, by id. */
  get joined() {
    return new Map(this._rooms);
  }

  /** Join a room (the same Room object if already joined). Add handlers right after it resolves. */
  async join(roomId, { subscriptions, history } = {}) {
    const existing = this._rooms.get(roomId) || this._joining.get(roomId);
    if (existing) return existing;
    const joining = (async () => {
      const room = new Room(this, roomId);
      await this.request("join", defined({ room: roomId, subscriptions, history }), (result) => {
        room._applyJoin(result, null);
        this._rooms.set(roomId, room);
      });
      room._start();
      return room;
    })();
    this._joining.set(roomId, joining);
    try {
      return await joining;
    } finally {
      this._joining.delete(roomId);
    }
  }

  room(roomId) {
    return this._rooms.get(roomId) || null;
  }

  async rooms() {
    return (await this.request("rooms", {})).rooms || [];
  }

  createRoom(id, name, { description, maxSize, events, presenceEvents, syncHistoryOnJoin } = {}) {
    return this.request("create_room", defined({
      room: id, name, description, max_size: maxSize, events, presence_events: presenceEvents,
      sync_history_on_join: syncHistoryOnJoin,
    }));
  }

  async deleteRoom(id) {
    await this.request("delete_room", { room: id });
  }

  // --- push registration (REST, beside the /ws endpoint: needs push= on the server) ---

  /**
   * Call the REST API beside the WebSocket endpoint with this client's credentials
   * (`token` as `Authorization: Bearer`, and the page's cookies); resolves to the JSON
   * answer (null for 204) or rejects with a DialogueError.
   */
  async fetchRest(path, options = {}) {
    return (await this._rest(path, options)).answer;
  }

  async _rest(path, { method = "GET", body } = {}) {
    const { token, credentials = "same-origin" } = this.options;
    const value = typeof token === "function" ? await token() : token;
    const headers = value != null ? { Authorization: `Bearer ${value}` } : {};
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(restUrl(this.url, path), {
        method, headers, credentials, body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      throw new DialogueError("UNAVAILABLE", `${method} ${path}: ${err.message}`);
    }
    if (response.status === 204) return { status: 204, answer: null };
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) {
      const error = answer.error || {};
      throw new DialogueError(error.code || (response.status === 404 ? "NOT_FOUND" : "UNAVAILABLE"),
        error.message || `${method} ${path}: ${response.status}`, { ...error, status: response.status });
    }
    return { status: response.status, answer };
  }

  /** The server's VAPID public key (base64url) for `pushManager.subscribe`. */
  async vapidPublicKey() {
    return (await this.fetchRest("/push/vapid-public-key")).public_key;
  }

  /**
   * Register this browser for Web Push. Given a ServiceWorkerRegistration, subscribes
   * it with the server's VAPID key (an existing subscription is reused); given a
   * PushSubscription, registers that one. `rooms`: rooms to be notified of besides
   * those the user is a member of. Resolves to `{id, created, subscription}`; the same
   * endpoint registered again updates it (`created: false`).
   */
  async registerPush(target, { rooms = [] } = {}) {
    let subscription = target;
    if (target && target.pushManager) {
      subscription = await target.pushManager.getSubscription();
      if (!subscription) {
        const key = base64UrlToBytes(await this.vapidPublicKey());
        subscription = await target.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key });
      }
    }
    if (!subscription || typeof subscription.toJSON !== "function") {
      throw new DialogueError("BAD_REQUEST", "registerPush needs a ServiceWorkerRegistration or a PushSubscription");
    }
    const { endpoint, keys } = subscription.toJSON();
    const body = { kind: "webpush", endpoint, keys, rooms };
    const { status, answer } = await this._rest("/push/subscriptions", { method: "POST", body });
    return { id: answer.id, created: status === 201, subscription };
  }

  /** This user's registrations: `[{id, kind, target, rooms, created_at, last_success_at, failures}]`. */
  async pushRegistrations() {
    return (await this.fetchRest("/push/subscriptions")).subscriptions;
  }

  /** Delete one of this user's registrations (`NOT_FOUND` when it is not theirs). */
  async unregisterPush(id) {
    await this.fetchRest(`/push/subscriptions/${encodeURIComponent(id)}`, { method: "DELETE" });
  }

  /** `fn(info)` for every room created at runtime. */
  onRoomCreated(fn) {
    return this._on.roomCreated.add(fn);
  }

  /** `fn(roomId)` when a room is deleted (also when a rejoin finds it gone). */
  onRoomDeleted(fn) {
    return this._on.roomDeleted.add(fn);
  }

  /** `fn({event, data, from, ts})` for messages sent to this user or client. */
  onDirect(fn) {
    return this._on.direct.add(fn);
  }

  /** `fn({op: "presence_join" | "presence_leave", room, user_id, client_id})`. */
  onPresence(fn) {
    return this._on.presence.add(fn);
  }

  /** `fn(state, {code, reason})`: connecting, connected, reconnecting, closed. */
  onState(fn) {
    return this._on.state.add(fn);
  }

  /** `fn(error, frame)` for error frames and rooms lost on a rejoin (`frame.room`). */
  onError(fn) {
    return this._on.error.add(fn);
  }

  /**
   * Send any command and resolve to its reply's `result`. Waits (up to
   * ackTimeout) for a reconnect in progress; rejects with a DialogueError.
   */
  async request(op, fields = {}, apply = null) {
    await this._ready();
    return this._send({ ...fields, op }, apply);
  }

  /** Close for good; rooms stop receiving and requests in flight fail. */
  close() {
    this._closing = true;
    this._attempt = 0;
    this._sleep?.();
    const ws = this._ws || this._opening;
    this._shutdown(1000, "client closed");
    if (!ws || ws.readyState >= 2) return Promise.resolve();
    return new Promise((resolve) => {
      ws.addEventListener("close", () => resolve(), { once: true });
      setTimeout(resolve, 1000);
      ws.close(1000, "client closed");
    });
  }

  // --- connection -------------------------------------------------------

  _setState(state, info = {}) {
    if (state === this.state) return;
    this.state = state;
    if (state === "connected" || state === "closed") {
      for (const waiter of [...this._waiters]) waiter();
    }
    this._on.state.emit(state, info);
  }

  // Before each (re)connect: a fresh ticket (when `ticket` is on; by default when `token`
  // is a function), or the token for `?token=`.
  async _credentials() {
    const { token, ticket, ticketUrl, credentials } = this.options;
    const value = typeof token === "function" ? await token() : token;
    if (!(ticket ?? typeof token === "function")) return { token: value };
    if (typeof ticket === "function") return { ticket: await ticket() };
    return { ticket: await fetchTicket(ticketUrl || this.url, { token: value, credentials }) };
  }

  // Open a socket and wait for hello; rejects with a DialogueError (`.closeCode`).
  async _open() {
    const url = wsUrl(this.url, await this._credentials());
    const { ackTimeout } = this.options;
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url);
      this._opening = ws;
      const fail = (code, reason) => {
        clearTimeout(timer);
        if (this._opening === ws) this._opening = null;
        ws.onmessage = ws.onclose = ws.onerror = null;
        const text = reason || (code === 1006 ? "could not connect" : `closed with ${code}`);
        reject(new DialogueError(REFUSALS[code] || "UNAVAILABLE", text, { closeCode: code }));
      };
      const timer = setTimeout(() => {
        fail(1006, `no hello within ${ackTimeout} ms`);
        ws.close();
      }, ackTimeout);
      ws.onclose = (ev) => fail(ev.code, ev.reason);
      // browsers follow an error with a close event (which has the code); some runtimes do not
      ws.onerror = () => setTimeout(() => {
        if (ws.onerror) fail(1006, "could not connect");
      }, 100);
      ws.onmessage = (ev) => {
        let frame;
        try {
          frame = JSON.parse(ev.data);
        } catch {
          return;
        }
        if (frame.op !== "hello") return;
        clearTimeout(timer);
        this._opening = null;
        if (this._closing) {
          ws.onclose = ws.onmessage = null;
          ws.close(1000, "client closed");
          reject(new DialogueError("UNAVAILABLE", "client closed"));
          return;
        }
        this._attach(ws, frame);
        resolve(frame);
      };
    });
  }

  _attach(ws, hello) {
    this._ws = ws;
    this.hello = hello;
    this._lastDisconnect = null;
    ws.onmessage = (ev) => this._onMessage(ws, ev.data);
    ws.onclose = (ev) => this._lost(ws, ev.code, ev.reason);
    ws.onerror = () => {};
    const seconds = this.options.heartbeat ?? hello.heartbeat;
    if (seconds > 0) {
      this._heartbeat = setInterval(() => this._ping(ws), seconds * 1000);
    }
  }

  _ping(ws) {
    if (ws !== this._ws) return;
    this._send({ op: "ping" }).catch((err) => {
      // no reply: the connection is dead even if the browser has not noticed
      if (err.code === "TIMEOUT" && ws === this._ws) {
        ws.onclose = null;
        ws.close(4000, "no reply to ping");
        this._lost(ws, 1006, "no reply to ping");
      }
    });
  }

  _onMessage(ws, data) {
    if (ws !== this._ws) return;
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return;
    }
    if (typeof frame.id === "number" && !frame.op) {
      this._reply(frame);
      return;
    }
    switch (frame.op) {
      case "event":
        this._rooms.get(frame.room)?._deliver(frame);
        break;
      case "presence_join":
      case "presence_leave":
        this._on.presence.emit(frame);
        break;
      case "direct":
        this._on.direct.emit(frame);
        break;
      case "room_created":
        this._on.roomCreated.emit(frame.room);
        break;
      case "room_deleted":
        this._roomGone(frame.room);
        break;
      case "error":
        this._on.error.emit(DialogueError.from(frame.error), frame);
        break;
      case "disconnect":
        this._lastDisconnect = frame;
        break;
    }
  }

  _reply(frame) {
    const pending = this._pending.get(frame.id);
    if (!pending) return;
    this._pending.delete(frame.id);
    clearTimeout(pending.timer);
    if (!frame.ok) {
      pending.reject(DialogueError.from(frame.error));
      return;
    }
    const result = frame.result || {};
    try {
      pending.apply?.(result);
    } catch (err) {
      pending.reject(err);
      return;
    }
    pending.resolve(result);
  }

  _send(frame, apply = null) {
    const ws = this._ws;
    if (!ws || ws.readyState !== 1) {
      return Promise.reject(new DialogueError("UNAVAILABLE", `not connected (${this.state})`));
    }
    const id = ++this._nextId;
    const { ackTimeout } = this.options;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(new DialogueError("TIMEOUT", `no reply to '${frame.op}' within ${ackTimeout} ms`));
      }, ackTimeout);
      this._pending.set(id, { resolve, reject, timer, apply });
      ws.send(JSON.stringify({ ...frame, id }));
    });
  }

  _ready() {
    if (this.state === "connected" && this._ws) return Promise.resolve();
    if (this.state === "closed") {
      return Promise.reject(new DialogueError("UNAVAILABLE", "the client is closed"));
    }
    return new Promise((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        this._waiters.delete(done);
        if (this.state === "connected") resolve();
        else reject(new DialogueError("UNAVAILABLE", `not connected (${this.state})`));
      };
      const timer = setTimeout(done, this.options.ackTimeout);
      this._waiters.add(done);
    });
  }

  _failPending(reason) {
    const pending = [...this._pending.values()];
    this._pending.clear();
    for (const p of pending) {
      clearTimeout(p.timer);
      p.reject(new DialogueError("UNAVAILABLE", reason));
    }
  }

  _roomGone(roomId) {
    const room = this._rooms.get(roomId);
    if (room) {
      this._rooms.delete(roomId);
      room._close();
    }
    this._on.roomDeleted.emit(roomId);
  }

  // The socket closed (or was found dead): reconnect unless the code forbids it.
  _lost(ws, code, reason) {
    if (ws !== this._ws) return;
    this._ws = null;
    clearInterval(this._heartbeat);
    reason = reason || this._lastDisconnect?.reason || "";
    this.closeCode = code;
    this.closeReason = reason;
    this._failPending(`connection lost (${code}${reason ? ": " + reason : ""})`);
    if (this._closing) return;
    if (!this.options.reconnect || NO_RECONNECT.has(code)) {
      this._shutdown(code, reason);
      return;
    }
    if (this.state === "reconnecting") return; // the loop below is running (drop during a rejoin)
    this._setState("reconnecting", { code, reason });
    this._reconnect();
  }

  async _reconnect() {
    const { backoffInitial, backoffMax } = this.options;
    while (!this._closing && this.state === "reconnecting") {
      const ceiling = Math.min(backoffMax, backoffInitial * 2 ** Math.min(this._attempt, 30));
      this._attempt += 1;
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, Math.random() * ceiling);
        this._sleep = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this._sleep = null;
      if (this._closing || this.state !== "reconnecting") return;
      try {
        await this._open();
      } catch (err) {
        if (this._closing) return;
        if (NO_RECONNECT.has(err.closeCode)) {
          this._shutdown(err.closeCode, err.message);
          return;
        }
        continue;
      }
      const ok = await this._rejoinAll();
      if (this._closing || this.state !== "reconnecting") return;
      if (ok && this._ws) {
        this._attempt = 0;
        this._setState("connected");
        return;
      }
      const ws = this._ws; // a rejoin failed transiently: try a fresh connection
      if (ws) {
        this._ws = null;
        clearInterval(this._heartbeat);
        ws.onclose = null;
        ws.close(1000, "rejoin failed; reconnecting");
      }
    }
  }

  async _rejoinAll() {
    const results = await Promise.all([...this._rooms.values()].map((room) => this._rejoin(room)));
    return results.every(Boolean);
  }

  async _rejoin(room) {
    const since = room._since();
    const frame = defined({ op: "join", room: room.id, subscriptions: room.subscriptions, since });
    try {
      await this._send(frame, (result) => room._applyJoin(result, since));
      if (room._excluded.size) {
        await this._send({ op: "unsubscribe", room: room.id, events: [...room._excluded] });
      }
    } catch (err) {
      if (!(err instanceof DialogueError) || TRANSIENT.has(err.code)) return false;
      this._on.error.emit(err, { op: "error", room: room.id, error: err.error });
      if (err.code === "ROOM_NOT_FOUND") this._roomGone(room.id);
      else {
        this._rooms.delete(room.id);
        room._close();
      }
      return true;
    }
    if (room.closed) this._send({ op: "leave", room: room.id }).catch(() => {}); // left meanwhile
    return true;
  }

  _shutdown(code, reason) {
    this._closing = true;
    clearInterval(this._heartbeat);
    this._sleep?.();
    const ws = this._ws;
    this._ws = null;
    if (ws) ws.onclose = ws.onmessage = null;
    if (this._opening) {
      this._opening.close(1000, "client closed");
      this._opening = null;
    }
    this.closeCode = code;
    this.closeReason = reason;
    this._failPending(reason ? `closed (${code}: ${reason})` : `closed (${code})`);
    for (const room of this._rooms.values()) room._close();
    this._rooms.clear();
    this._setState("closed", { code, reason });
  }
}

/**
 * Connect to a dialogue-fastapi WebSocket endpoint (absolute, or relative to
 * the page: "/dialogue/ws"); resolves once the server said hello. Rejects with
 * a DialogueError if this first attempt fails (UNAUTHORIZED for close 4001).
 */
export async function connect(url, {
  token, ticket, ticketUrl, credentials, reconnect = true, ackTimeout = 10000, backoffInitial = 250,
  backoffMax = 10000, heartbeat,
} = {}) {
  const client = new Client(url, {
    token, ticket, ticketUrl, credentials, reconnect, ackTimeout, backoffInitial, backoffMax, heartbeat,
  });
  client._setState("connecting");
  try {
    await client._open();
  } catch (err) {
    client._closing = true;
    client._setState("closed", { code: err.closeCode, reason: err.message });
    throw err;
  }
  client._setState("connected");
  return client;
}

export default connect;
