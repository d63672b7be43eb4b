/**
 * The in-order PUBACK queue of one session. MQTT 3.1.1 requires PUBACKs in the order the PUBLISHes were
 * received [MQTT-4.6.0-2], but durable appends may resolve in any order (group commits, retries): each QoS 1
 * PUBLISH takes a slot when it arrives, its append marks the slot done, and only the done prefix of the queue
 * is released. A ring buffer, pre-allocated and grown only by doubling, so the hot path allocates nothing.
 */
export class AckQueue {
  private ids: Uint16Array;
  private done: Uint8Array;
  private head = 0;
  private size = 0;
  // Sequence number of the slot at `head`; a ticket is a sequence number, so tickets stay valid across growth.
  private headSequence = 0;

  /** @param capacity initial slots (grows by doubling when exceeded). */
  constructor(capacity = 64) {
    const slots = Math.max(2, capacity);
    this.ids = new Uint16Array(slots);
    this.done = new Uint8Array(slots);
  }

  /** Slots taken and not yet released. */
  get length(): number {
    return this.size;
  }

  /** Takes the next slot for a PUBLISH with this packet id; returns the ticket to pass to {@link complete}. */
  push(packetId: number): number {
    if (this.size === this.ids.length) this.grow();
    const index = (this.head + this.size) % this.ids.length;
    this.ids[index] = packetId;
    this.done[index] = 0;
    const ticket = this.headSequence + this.size;
    this.size += 1;
    return ticket;
  }

  /**
   * Marks a slot done and releases the done prefix: `release` is called with each packet id that may now be
   * acknowledged, in arrival order. Returns how many were released. An unknown or repeated ticket is ignored.
   */
  complete(ticket: number, release: (packetId: number) => void): number {
    const offset = ticket - this.headSequence;
    if (offset < 0 || offset >= this.size) return 0;
    this.done[(this.head + offset) % this.ids.length] = 1;
    let released = 0;
    while (this.size > 0 && this.done[this.head] === 1) {
      release(this.ids[this.head] as number);
      this.done[this.head] = 0;
      this.head = (this.head + 1) % this.ids.length;
      this.headSequence += 1;
      this.size -= 1;
      released += 1;
    }
    return released;
  }

  /** Forgets every slot (the connection closed: nothing is acknowledged any more). */
  clear(): void {
    this.headSequence += this.size;
    this.head = 0;
    this.size = 0;
  }

  private grow(): void {
    const ids = new Uint16Array(this.ids.length * 2);
    const done = new Uint8Array(this.ids.length * 2);
    for (let i = 0; i < this.size; i++) {
      const from = (this.head + i) % this.ids.length;
      ids[i] = this.ids[from] as number;
      done[i] = this.done[from] as number;
    }
    this.ids = ids;
    this.done = done;
    this.head = 0;
  }
}
