// An in-memory storage adapter for oidc-provider whose data lives in this module, not in a
// Provider instance. server.mjs rebuilds the Provider when /__test/rotate-keys swaps the
// signing key; sessions, interactions, grants, codes and tokens survive that because every
// instance reads and writes the same maps here.
//
// Demo/test only: everything is lost when the process exits.

const GRACE_MS = 15_000; // matches oidc-provider's default clockTolerance
const MAX_ENTRIES = 200_000; // oldest entries go first past this (bounded memory under load)

const entries = new Map(); // "Model:id" -> { payload, expiresAt }
const grantMembers = new Map(); // grantId -> Set of "Model:id"
const sessionByUid = new Map(); // session uid -> session id
const byUserCode = new Map(); // user code -> id

function live(key) {
  const entry = entries.get(key);
  if (!entry) return undefined;
  if (entry.expiresAt <= Date.now()) {
    entries.delete(key);
    return undefined;
  }
  return entry;
}

function sweep() {
  const now = Date.now();
  for (const [key, entry] of entries) {
    if (entry.expiresAt <= now) entries.delete(key);
  }
  for (const [grantId, members] of grantMembers) {
    for (const key of members) if (!entries.has(key)) members.delete(key);
    if (members.size === 0) grantMembers.delete(grantId);
  }
  for (const [uid, id] of sessionByUid) if (!entries.has(`Session:${id}`)) sessionByUid.delete(uid);
  for (const [code, key] of byUserCode) if (!entries.has(key)) byUserCode.delete(code);
}
setInterval(sweep, 60_000).unref();

export class SharedMemoryAdapter {
  constructor(model) {
    this.model = model;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  async upsert(id, payload, expiresIn) {
    const key = this.key(id);
    const expiresAt = typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 + GRACE_MS : Infinity;
    entries.delete(key); // re-insert at the end: Map order is the eviction order
    entries.set(key, { payload: structuredClone(payload), expiresAt });
    if (entries.size > MAX_ENTRIES) entries.delete(entries.keys().next().value);
    if (this.model === 'Session' && payload.uid) sessionByUid.set(payload.uid, id);
    if (payload.userCode) byUserCode.set(payload.userCode, key);
    if (payload.grantId) {
      let members = grantMembers.get(payload.grantId);
      if (!members) grantMembers.set(payload.grantId, (members = new Set()));
      members.add(key);
    }
  }

  async find(id) {
    const entry = live(this.key(id));
    return entry ? structuredClone(entry.payload) : undefined;
  }

  async findByUid(uid) {
    const id = sessionByUid.get(uid);
    return id === undefined ? undefined : this.find(id);
  }

  async findByUserCode(userCode) {
    const key = byUserCode.get(userCode);
    const entry = key && live(key);
    return entry ? structuredClone(entry.payload) : undefined;
  }

  async consume(id) {
    const entry = live(this.key(id));
    if (entry) entry.payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) {
    entries.delete(this.key(id));
  }

  async revokeByGrantId(grantId) {
    const members = grantMembers.get(grantId);
    if (!members) return;
    for (const key of members) entries.delete(key);
    grantMembers.delete(grantId);
  }
}
