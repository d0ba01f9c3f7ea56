/** Typed errors shared by the image decoders, each naming the file it is about. */
import { ClipdexError, errorMessage } from '../errors.js';

export function tooLarge(name: string, width: number, height: number, maxPixels: number): ClipdexError {
  const mp = (n: number) => `${(n / 1e6).toFixed(1)} MP`;
  return new ClipdexError(
    'IMAGE_TOO_LARGE',
    `${name} is ${width}x${height} (${mp(width * height)}), over the ${mp(maxPixels)} limit; raise maxPixels to read it`,
    { details: { file: name, width, height, maxPixels } },
  );
}

/**
 * Maps a sharp/libvips failure to our codes. libvips reports only by message, so this matches
 * the few messages that mean something other than "the data is bad".
 */
export function fromSharpError(err: unknown, name: string, maxPixels: number): ClipdexError {
  if (err instanceof ClipdexError) return err;
  const message = errorMessage(err);
  const firstLine = message.split('\n')[0] ?? message;
  const details = { file: name, decoder: message };
  if (/exceeds pixel limit/i.test(message)) {
    return new ClipdexError('IMAGE_TOO_LARGE', `${name} is over the ${(maxPixels / 1e6).toFixed(1)} MP limit: ${firstLine}`, {
      cause: err,
      details: { ...details, maxPixels },
    });
  }
  if (/Input file is missing/i.test(message)) {
    return new ClipdexError('FILE_NOT_FOUND', `File not found: ${name}`, { cause: err, details });
  }
  return new ClipdexError('DECODE_FAILED', `Cannot decode ${name}: ${firstLine}`, { cause: err, details });
}
