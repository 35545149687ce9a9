// Signing in with the key kept in this browser: the challenge, its check, the
// signature, and what each failure means for the person signing in.

import { ApiError, api } from "./api";
import { encodeBase64 } from "./b64";
import { type StoredKey, publicKeyText, sign } from "./keys";

/** Why a sign-in did not work, said for the person signing in. */
export class SignInError extends Error {
  constructor(
    message: string,
    /** The server refused the key (not added yet, or revoked). */
    readonly refused = false,
  ) {
    super(message);
  }
}

/** Signs a challenge with `key` and opens a session (the daemon sets the cookie). */
export async function signIn(key: StoredKey, origin = location.origin): Promise<void> {
  try {
    const challenge = await api.challenge(publicKeyText(key));
    // Never sign for another site: the challenge names the origin it is for.
    const expected = `origin: ${origin}`;
    const line = challenge.message.split("\n")[1];
    if (line !== expected) {
      const theirs = line?.replace(/^origin: /, "") ?? "an unknown address";
      throw new SignInError(
        `This server signs you in at ${theirs}, not at ${origin}. Open ChatSender at ${theirs}.`,
      );
    }
    const signature = await sign(key, challenge.message);
    await api.login(challenge.challenge_id, encodeBase64(signature));
  } catch (error) {
    if (error instanceof SignInError) throw error;
    if (error instanceof ApiError) {
      if (error.status === 401) {
        throw new SignInError(
          "The server does not accept this key: it has not been added yet, or it was revoked. Ask the operator.",
          true,
        );
      }
      if (error.status === 429) throw new SignInError(`Too many attempts. ${error.message}`);
      throw new SignInError(error.message);
    }
    throw new SignInError(`Signing in failed: ${error instanceof Error ? error.message : String(error)}`);
  }
}
