// Types for herald.js, the browser client of the Herald push hub.

export declare const VERSION: string;

/** An event from the hub. `data` is the payload exactly as published (a string). */
export interface HeraldEvent {
  /** `<epoch>-<seq>`, or `<epoch>-<seq>-d` for a durable message; null for control events. */
  readonly id: string | null;
  /** The publisher's event name, or "message" when none was given. */
  readonly event: string;
  readonly data: string;
  /** True for messages published with `durable: true`: they are acknowledged (see autoAck). */
  readonly durable: boolean;
  /** The payload parsed as JSON; throws when it is not JSON. */
  json<T = unknown>(): T;
}

export type Transport = "sse" | "poll";
export type Role = "solo" | "leader" | "follower";
export type ConnectionState = "connecting" | "open" | "reconnecting" | "closed";

/** Passed to the `open`, `reconnecting` and `closed` listeners. */
export interface StateInfo {
  connectionId: string | null;
  user: string | null;
  position: string | null;
  /** The transport of the tab holding the hub connection. */
  transport: Transport | null;
  role: Role;
  /** Why the connection is reconnecting or closed: "error", "silent", "hidden", "handover", "switch", "kicked", or close()'s argument. */
  reason?: string;
}

type StateEvent = "open" | "reconnecting" | "closed";
/** May return a promise: a durable message is acknowledged once it resolves. */
export type Listener = (event: HeraldEvent) => unknown;
export type StateListener = (info: StateInfo) => void;
/** Event names to listeners: "open", "reconnecting" and "closed" get a StateInfo, others a HeraldEvent. */
export type Listeners<T = Record<string, unknown>> = {
  [K in keyof T]: K extends StateEvent ? StateListener : Listener;
};

export interface ConnectOptions {
  /** The subscriber JWT. */
  token?: string;
  /** Called before every (re)connect and after a 401, so that expiring tokens are refreshed. */
  getToken?: () => string | Promise<string>;
  clientId?: string;
  channels?: string[];
  /** The app id; the default app when omitted. */
  app?: string;
  /** Exponential backoff with jitter between attempts, in ms. Defaults: 500 and 30000. */
  reconnect?: { initialDelay?: number; maxDelay?: number };
  /**
   * ms without any event on the stream before falling back to long-polling (default 45000).
   * Liveness is seen through events (the hub sends `herald.ping` each heartbeat), so this must
   * be well above the hub's heartbeat interval.
   */
  silenceTimeout?: number;
  /** While polling, ms between attempts to stream again (default 30000). */
  probeInterval?: number;
  /** Seconds a long poll may wait on the hub (default 25, max 60). */
  pollTimeout?: number;
  /** One hub connection per browser, shared by tabs (default true). */
  shared?: boolean;
  /** Drop the hub connection after every tab has been hidden this many ms; null keeps it. */
  hiddenTimeout?: number | null;
  /** Acknowledge durable messages once their listeners return (default true). */
  autoAck?: boolean;
  /** Called with the user's unread count whenever it changes. */
  onUnread?: (count: number) => void;
  /** "auto" (EventSource, polling as fallback) or "poll" (default "auto"). */
  transport?: "auto" | "poll";
}

export interface SendOptions {
  /** Appended to the upstream URL as the query string. */
  query?: Record<string, string> | URLSearchParams | string;
  headers?: HeadersInit;
}

export interface Connection {
  readonly state: ConnectionState;
  readonly connectionId: string | null;
  readonly user: string | null;
  /** The id the next (re)connect resumes from. */
  readonly position: string | null;
  readonly unread: number | null;
  /** The transport in the tab holding the hub connection; null in follower tabs. */
  readonly transport: Transport | null;
  readonly role: Role;

  on(event: StateEvent, fn: StateListener): this;
  on(event: string, fn: Listener): this;
  on<T>(listeners: Listeners<T>): this;
  off(event: string, fn: Listener | StateListener): this;
  off<T>(listeners: Listeners<T>): this;

  /** True while events are flowing (state "open"). */
  isActive(): boolean;
  /** Acknowledges a durable message; batched with other acks. */
  ack(id: string): void;
  /**
   * POST {url}/send/{path} with the user's token. Plain objects, arrays, numbers and booleans
   * are sent as JSON. Queued while offline and retried after network failures, with one
   * Idempotency-Key per call; resolves with the backend's answer.
   */
  send(path: string, body?: BodyInit | object | number | boolean | null, options?: SendOptions): Promise<Response>;
  /** Multipart upload to {url}/send/{path}, delivered like send(). */
  upload(path: string, formData: FormData, options?: SendOptions): Promise<Response>;
  /** Moves this tab to another hub URL, resuming from the current position. */
  switchUrl(url: string): void;
  /** Closes for good; queued sends are rejected. */
  close(reason?: string): void;
}

export declare function connect<T>(url: string, listeners?: Listeners<T>, options?: ConnectOptions): Promise<Connection>;
