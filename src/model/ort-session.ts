/**
 * The old home of session creation, now in inference/onnx-runtime.ts. Kept only so the importers owned
 * elsewhere (server/app.ts, ingest/ingest-engine.ts) keep working; delete it once they import the backend.
 */
export {
  DEFAULT_PROVIDERS,
  type OpenedSession,
  openSession,
  type ProviderFallback,
  type ProviderName,
  providerUnavailableReason,
  type SessionOptions,
  sessionOptionsFromEnv,
} from '../inference/onnx-runtime.js';
