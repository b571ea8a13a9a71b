// Development OIDC provider for CypherGate's local stack and tests.
// Reads a JSON config file (argv[2]); prints "READY <issuer>" once listening.
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { generateKeyPairSync, randomBytes, timingSafeEqual } from 'node:crypto';
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
// Clients that people sign in to (authorization code with PKCE), such as the audit page.
const webClients = (config.web_clients ?? []).map((c) => ({
  client_id: c.client_id,
  client_secret: c.client_secret,
  grant_types: ['authorization_code'],
  response_types: ['code'],
  redirect_uris: c.redirect_uris,
  post_logout_redirect_uris: c.post_logout_redirect_uris ?? [],
  token_endpoint_auth_method: 'client_secret_basic',
}));
const webClientIds = new Set(webClients.map((c) => c.client_id));
const byId = new Map(config.clients.map((c) => [c.client_id, c]));
// The people who may sign in: login -> { password, name }.
const people = new Map((config.people ?? []).map((p) => [p.login, p]));

function passwordMatches(person, given) {
  const a = Buffer.from(person.password, 'utf8');
  const b = Buffer.from(given ?? '', 'utf8');
  return a.length === b.length && timingSafeEqual(a, b);
}

const provider = new Provider(config.issuer, {
  clients: [...clients, ...webClients],
  jwks,
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  findAccount: (ctx, id) => {
    const person = people.get(id);
    if (!person) return undefined;
    return { accountId: id, claims: () => ({ sub: id, name: person.name }) };
  },
  claims: { openid: ['sub'], profile: ['name'] },
  // Put the profile's claims in the ID token, so a signed-in page can greet people by name.
  conformIdTokenClaims: false,
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  // The stack's web clients are first-party: signing in grants them openid and profile, with
  // no consent screen.
  loadExistingGrant: async (ctx) => {
    const grantId = ctx.oidc.result?.consent?.grantId
      || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    if (!webClientIds.has(ctx.oidc.client.clientId)) return undefined;
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope('openid profile');
    await grant.save();
    return grant;
  },
  pkce: { required: () => true },
  extraClientMetadata: { properties: ['dag_id', 'token_ttl'] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: false },
    revocation: { enabled: false },
    resourceIndicators: {
      enabled: true,
      // Machine clients get tokens for the gateway; people signing in get only an ID token.
      defaultResource: (ctx, client) => (webClientIds.has(client.clientId) ? undefined : config.audience),
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

const escapeHtml = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function loginPage(uid, clientId, message) {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Sign in</title></head>
<body><main><h1>Sign in</h1><p>to <strong>${escapeHtml(clientId)}</strong> (CypherGate devstack)</p>
${message ? `<p role="alert">${escapeHtml(message)}</p>` : ''}
<form method="post" action="/interaction/${escapeHtml(uid)}">
<label>Login <input name="login" autocomplete="username" required autofocus></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required></label>
<button type="submit">Sign in</button></form></main></body></html>`;
}

async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 16 * 1024) throw new Error('form too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

// The login step of the authorization code flow: a form checked against config.people.
provider.use(async (ctx, next) => {
  const match = /^\/interaction\/([\w-]+)$/.exec(ctx.path);
  if (!match) return next();
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  if (details.uid !== match[1] || details.prompt.name !== 'login') {
    ctx.status = 400;
    ctx.body = 'unexpected interaction';
    return undefined;
  }
  ctx.type = 'html';
  ctx.set('Cache-Control', 'no-store');
  if (ctx.method === 'GET') {
    ctx.body = loginPage(details.uid, details.params.client_id);
    return undefined;
  }
  if (ctx.method !== 'POST') {
    ctx.status = 405;
    return undefined;
  }
  const form = await readForm(ctx.req);
  const person = people.get(form.get('login'));
  if (!person || !passwordMatches(person, form.get('password'))) {
    ctx.status = 401;
    ctx.body = loginPage(details.uid, details.params.client_id, 'Unknown login or wrong password.');
    return undefined;
  }
  const to = await provider.interactionResult(ctx.req, ctx.res, {
    login: { accountId: form.get('login') },
  }, { mergeWithLastSubmission: false });
  ctx.status = 303;
  ctx.redirect(to);
  return undefined;
});
const server = provider.listen(config.port, '127.0.0.1', () => {
  console.log(`READY ${config.issuer}`);
});
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => server.close(() => process.exit(0)));
