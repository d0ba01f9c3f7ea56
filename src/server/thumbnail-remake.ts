/**
 * Thumbnails this server lacks, made from the photo when they are asked for. On a library in Postgres the
 * photo may have been encoded on another machine (`clipdex worker` makes no thumbnails: its folder is not
 * the servers'), and a server's thumbnail folder may be new or cleared; either way the original is there
 * to make one from. Only the file that was indexed is used (photo-file.ts's checks, then its bytes' hash
 * against the recorded one); files past a size bound are not read; one read per photo however many
 * requests ask for it at once, and files read under a byte budget, so a page of missing thumbnails cannot
 * fill memory.
 */
import type { Library } from '../library/library.js';
import { sha256Hex } from '../ingest/content-hash.js';
import { openImage } from '../model/image-decode.js';
import type { ImageRecord } from '../store/images-repo.js';
import { ByteBudget } from '../util/byte-budget.js';
import { openPhotoFile } from './photo-file.js';

/** Photos larger than this are not read to make a thumbnail (a 100 MP TIFF would hold that much at once). */
const MAX_FILE_BYTES = 256 * 1024 * 1024;

export class ThumbnailRemaker {
  private readonly making = new Map<string, Promise<boolean>>();
  private readonly budget: ByteBudget;

  constructor(
    private readonly library: Library,
    budgetBytes = MAX_FILE_BYTES,
  ) {
    this.budget = new ByteBudget(budgetBytes);
  }

  /** Makes the thumbnail of `image` if it is missing; true when it exists afterwards. */
  async ensure(image: ImageRecord): Promise<boolean> {
    const hash = image.contentHash;
    if (!hash || image.size > MAX_FILE_BYTES) return false;
    if (await this.library.thumbnails.has(hash)) return true;
    let pending = this.making.get(hash);
    if (!pending) {
      pending = this.reserved(image.size, () => this.make(image, hash)).finally(() => this.making.delete(hash));
      this.making.set(hash, pending);
    }
    return pending;
  }

  private async reserved<T>(bytes: number, work: () => Promise<T>): Promise<T> {
    const release = await this.budget.acquire(bytes);
    try {
      return await work();
    } finally {
      release();
    }
  }

  private async make(image: ImageRecord, hash: string): Promise<boolean> {
    if (await this.library.thumbnails.has(hash)) return true;
    const file = await openPhotoFile(this.library, image);
    if (!file.ok) return false;
    let bytes: Buffer;
    try {
      bytes = await file.handle.readFile();
    } finally {
      await file.handle.close().catch(() => undefined);
    }
    // The file at that path may have other content now (rewritten with the same size and mtime): no thumbnail of it.
    if (sha256Hex(bytes) !== hash) return false;
    try {
      const webp = await (await openImage(bytes)).thumbnail();
      await this.library.thumbnails.put(hash, webp);
      return true;
    } catch {
      return false;
    }
  }
}
