// panva's oidc-provider on 127.0.0.1, configured for tether's auth interop tests.
//
// PEER_PORT       the port to listen on (127.0.0.1 only)
// PEER_CLIENT_JWKS the public JWK Set of the private_key_jwt client (JSON)
//
// Sign-in is headless: /interaction/<uid> answers a one-field HTML form that the test submits;
// the handler grants every requested scope to the account named in the form, so no developer
// interaction pages are involved. GET /__stats reports token endpoint counters for the tests.

import http from 'node:http';
import Provider from 'oidc-provider';

const port = Number(process.env.PEER_PORT);
if (!port) {
  console.error('PEER_PORT is required');
  process.exit(2);
}
const issuer = `http://127.0.0.1:${port}`;
const clientJwks = JSON.parse(process.env.PEER_CLIENT_JWKS || '{"keys":[]}');
const deviceGrant = 'urn:ietf:params:oauth:grant-type:device_code';
const stats = { token_requests: 0, token_errors: 0, invalid_grant: 0 };

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: 'app',
      client_secret: 'app-secret-canary-5b7e',
      token_endpoint_auth_method: 'client_secret_basic',
      application_type: 'native',
      grant_types: ['authorization_code', 'refresh_token', 'client_credentials', deviceGrant],
      redirect_uris: ['http://127.0.0.1/callback'],
      response_types: ['code'],
      scope: 'openid offline_access api',
    },
    {
      client_id: 'post-app',
      client_secret: 'post-secret-canary-2c4d',
      token_endpoint_auth_method: 'client_secret_post',
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
      scope: 'api',
    },
    {
      client_id: 'cli',
      token_endpoint_auth_method: 'none',
      application_type: 'native',
      grant_types: ['authorization_code', 'refresh_token', deviceGrant],
      redirect_uris: ['http://127.0.0.1/callback'],
      response_types: ['code'],
      scope: 'openid offline_access api',
    },
    {
      client_id: 'pkjwt',
      token_endpoint_auth_method: 'private_key_jwt',
      token_endpoint_auth_signing_alg: 'RS256',
      jwks: clientJwks,
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
      scope: 'api',
    },
    {
      client_id: 'rs',
      client_secret: 'rs-secret',
      grant_types: [],
      redirect_uris: [],
      response_types: [],
    },
  ],
  clientDefaults: { grant_types: [], response_types: [], id_token_signed_response_alg: 'RS256' },
  cookies: { keys: ['interop-tests-only'] },
  findAccount: async (ctx, id) => ({ accountId: id, claims: async () => ({ sub: id }) }),
  features: {
    clientCredentials: { enabled: true },
    devInteractions: { enabled: false },
    deviceFlow: {
      enabled: true,
      userCodeInputSource: async (ctx, form) => { ctx.body = form; },
      userCodeConfirmSource: async (ctx, form) => { ctx.body = form; },
      successSource: async (ctx) => { ctx.body = 'device approved'; },
    },
    dPoP: {
      enabled: true,
      nonceSecret: Buffer.alloc(32, 7),
      requireNonce: () => true,
    },
    introspection: { enabled: true },
    revocation: { enabled: true },
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  pkce: { required: () => true },
  // A replayed (already rotated) refresh token revokes the whole grant.
  rotateRefreshToken: true,
  scopes: ['openid', 'offline_access', 'api'],
  ttl: { AccessToken: 3600, ClientCredentials: 3600, DeviceCode: 600 },
});

provider.on('grant.success', () => { stats.token_requests += 1; });
provider.on('grant.error', (ctx, error) => {
  stats.token_requests += 1;
  stats.token_errors += 1;
  if (error.error === 'invalid_grant') stats.invalid_grant += 1;
});

async function interaction(req, res, uid, submitted) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) throw new Error('interaction uid mismatch');
  if (!submitted) {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(`<form method="post" action="/interaction/${uid}/login">`
      + '<input type="hidden" name="login" value="alice"/></form>');
    return;
  }
  const body = await new Promise((resolve) => {
    let data = '';
    req.on('data', (chunk) => { data += chunk; });
    req.on('end', () => resolve(new URLSearchParams(data)));
  });
  const accountId = body.get('login') || 'alice';
  const { params, prompt } = details;
  let grant = details.grantId ? await provider.Grant.find(details.grantId) : undefined;
  if (!grant) grant = new provider.Grant({ accountId, clientId: params.client_id });
  if (params.scope) grant.addOIDCScope(params.scope);
  const missing = prompt.details.missingResourceScopes || {};
  for (const [indicator, scopes] of Object.entries(missing)) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  const grantId = await grant.save();
  await provider.interactionFinished(
    req, res, { login: { accountId }, consent: { grantId } }, { mergeWithLastSubmission: false },
  );
}

const callback = provider.callback();
const server = http.createServer(async (req, res) => {
  try {
    const url = new URL(req.url, issuer);
    if (url.pathname === '/__stats') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(stats));
      return;
    }
    const match = url.pathname.match(/^\/interaction\/([^/]+)(\/login)?$/);
    if (match) {
      await interaction(req, res, match[1], Boolean(match[2]) && req.method === 'POST');
      return;
    }
    callback(req, res);
  } catch (error) {
    res.writeHead(500, { 'content-type': 'text/plain' });
    res.end(String(error));
  }
});
server.listen(port, '127.0.0.1', () => console.log(`oidc-provider listening on ${issuer}`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
