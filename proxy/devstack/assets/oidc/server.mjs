// Development OIDC provider for CypherGate's local stack and tests.
// Reads a JSON config file (argv[2]); prints "READY <issuer>" once listening.
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));

function loadOrCreateKeys(path) {
  if (existsSync(path)) return JSON.parse(readFileSync(path, 'utf8'));
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  const keys = { keys: [{ ...jwk, kid: `devstack-${Date.now()}`, use: 'sig', alg: 'RS256' }] };
  writeFileSync(path, JSON.stringify(keys), { mode: 0o600 });
  return keys;
}

const jwks = loadOrCreateKeys(config.keys_file);
const clients = config.clients.map((c) => ({
  client_id: c.client_id,
  client_secret: c.client_secret,
  grant_types: ['client_credentials'],
  response_types: [],
  redirect_uris: [],
  token_endpoint_auth_method: 'client_secret_post',
  ...(c.dag_id ? { dag_id: c.dag_id } : {}),
  token_ttl: c.token_ttl,
}));
const byId = new Map(config.clients.map((c) => [c.client_id, c]));

const provider = new Provider(config.issuer, {
  clients,
  jwks,
  extraClientMetadata: { properties: ['dag_id', 'token_ttl'] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: false },
    revocation: { enabled: false },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => config.audience,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resourceIndicator) => {
        if (!config.resources.includes(resourceIndicator)) {
          throw new Provider.errors.InvalidTarget();
        }
        return {
          scope: 'cypher',
          audience: resourceIndicator,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
  ttl: {
    ClientCredentials: (ctx, token, client) => client.token_ttl ?? 300,
  },
  extraTokenClaims: (ctx, token) => {
    const client = byId.get(token.clientId);
    return client && client.dag_id ? { dag_id: client.dag_id } : undefined;
  },
});
provider.proxy = false;
const server = provider.listen(config.port, '127.0.0.1', () => {
  console.log(`READY ${config.issuer}`);
});
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => server.close(() => process.exit(0)));
