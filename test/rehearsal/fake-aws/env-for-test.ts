// Sets process environment variables for one test file and puts the old
// values back afterwards: the SDK reads its endpoint and credential settings
// from the environment, as it does on an instance.
export function useEnv(vars: () => Record<string, string | undefined>): void {
  const saved = new Map<string, string | undefined>();
  beforeAll(() => {
    for (const [k, v] of Object.entries(vars())) {
      saved.set(k, process.env[k]);
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });
  afterAll(() => {
    for (const [k, v] of saved) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });
}

/** No credentials from the environment or files: the SDK's chain falls through to instance metadata, as on an instance. */
export const INSTANCE_LIKE_CREDENTIALS = {
  AWS_ACCESS_KEY_ID: undefined,
  AWS_SECRET_ACCESS_KEY: undefined,
  AWS_SESSION_TOKEN: undefined,
  AWS_PROFILE: undefined,
  AWS_SHARED_CREDENTIALS_FILE: '/nonexistent/volley-rehearsal/credentials',
  AWS_CONFIG_FILE: '/nonexistent/volley-rehearsal/config',
  AWS_EC2_METADATA_DISABLED: undefined,
  AWS_CONTAINER_CREDENTIALS_RELATIVE_URI: undefined,
  AWS_CONTAINER_CREDENTIALS_FULL_URI: undefined,
  AWS_WEB_IDENTITY_TOKEN_FILE: undefined,
};
