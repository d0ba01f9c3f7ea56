import type { OpenAPIRegistry } from '@asteasolutions/zod-to-openapi';
import { assertOcrSettable, ocrStateOf } from '../../ingest/ocr-service.js';
import { OcrRepo } from '../../store/ocr-repo.js';
import { ocrStatus } from '../api-responses.js';
import { ocrBody } from '../api-schemas.js';
import { ApiRoutes } from '../api-routes.js';
import { errors, json } from '../openapi.js';
import type { RouteContext } from './route-context.js';

/** Text in photos: the library's on/off (its state is also in /api/status as `ingest.ocr`). */
export function ocrRoutes({ library, ingest }: RouteContext, registry: OpenAPIRegistry) {
  return new ApiRoutes(registry).put(
    '/api/ocr',
    {
      summary: "Turn reading the text in photos on or off, now and as the library's setting for later starts; what was read stays searchable",
      description: 'Refused (409 SETTING_OVERRIDDEN) when CLIPDEX_OCR in the server’s environment says otherwise: it overrides the library’s setting.',
      body: ocrBody,
      responses: { 200: json('the OCR status', ocrStatus), ...errors(400, 409) },
    },
    async ({ body: { enabled } }, _req, res) => {
      if (ingest?.setOcrEnabled) return res.json(await ingest.setOcrEnabled(enabled));
      // No engine (no model loaded): the setting alone, for the engine of the next start.
      const repo = new OcrRepo(library.store.db);
      assertOcrSettable(ocrStateOf(repo), enabled);
      repo.setSetting(enabled);
      res.json(ocrStateOf(repo));
    },
  ).router;
}
