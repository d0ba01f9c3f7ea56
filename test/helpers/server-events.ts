/**
 * A running server's event stream (`GET /api/events`, server-sent events) as the page reads it: each event's
 * name and its parsed JSON data, until `signal` aborts or the stream ends.
 */
export async function* serverEvents(url: string, signal: AbortSignal): AsyncGenerator<{ type: string; data: any }> {
  const res = await fetch(`${url}/api/events`, { signal });
  const decoder = new TextDecoder();
  let buffer = '';
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(chunk, { stream: true });
    let end: number;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const type = /^event: (.*)$/m.exec(block)?.[1];
      const data = /^data: (.*)$/m.exec(block)?.[1];
      if (type !== undefined && data !== undefined) yield { type, data: JSON.parse(data) };
    }
  }
}
