/** Chooses the signature provider from the api's configuration. */
import { createDropboxSignProvider, createManualSignatureProvider, type SignatureProvider } from '@petcover/domain';
import type { ApiEnv } from './env';

export function signatureProviderFromEnv(env: ApiEnv): SignatureProvider {
  // DEV_AUTO_ENROLL_PET approves inline: nothing may leave the process.
  if (env.DEV_AUTO_ENROLL_PET || env.SIGNATURE_PROVIDER === 'manual') return createManualSignatureProvider();
  return createDropboxSignProvider({ apiKey: env.SIGNATURE_API_KEY, baseUrl: env.DROPBOX_SIGN_BASE_URL, testMode: env.DROPBOX_SIGN_TEST_MODE });
}
