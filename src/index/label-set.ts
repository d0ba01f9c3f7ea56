/**
 * A set of uint32 ids as a paged byte map: O(1) add/has/delete, about one byte per id in the densest
 * range, and no cost for empty stretches. Image ids are dense rowids, so this is far smaller than a
 * Set<number> of a million entries (tens of MB).
 */
const PAGE_BITS = 16;
const PAGE_SIZE = 1 << PAGE_BITS;

export class LabelSet {
  private readonly pages = new Map<number, Uint8Array>();
  private count = 0;

  constructor(ids?: Iterable<number>) {
    if (ids) for (const id of ids) this.add(id);
  }

  get size(): number {
    return this.count;
  }

  has(id: number): boolean {
    const page = this.pages.get(Math.floor(id / PAGE_SIZE));
    return page !== undefined && page[id % PAGE_SIZE] === 1;
  }

  add(id: number): boolean {
    const key = Math.floor(id / PAGE_SIZE);
    let page = this.pages.get(key);
    if (!page) {
      page = new Uint8Array(PAGE_SIZE);
      this.pages.set(key, page);
    }
    const i = id % PAGE_SIZE;
    if (page[i] === 1) return false;
    page[i] = 1;
    this.count++;
    return true;
  }

  delete(id: number): boolean {
    const page = this.pages.get(Math.floor(id / PAGE_SIZE));
    const i = id % PAGE_SIZE;
    if (page?.[i] !== 1) return false;
    page[i] = 0;
    this.count--;
    return true;
  }

  *[Symbol.iterator](): IterableIterator<number> {
    const keys = [...this.pages.keys()].sort((a, b) => a - b);
    for (const key of keys) {
      const page = this.pages.get(key)!;
      for (let i = 0; i < PAGE_SIZE; i++) if (page[i] === 1) yield key * PAGE_SIZE + i;
    }
  }

  toArray(): number[] {
    return [...this];
  }
}
