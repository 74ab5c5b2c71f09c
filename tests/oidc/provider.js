// A real OpenID Connect provider (npm `oidc-provider`) for Vaidya's single sign-on tests.
// NEVER for production: its sign-in form accepts any user name without a password.
//
//   node provider.js PORT REDIRECT_URI CLIENT_ID CLIENT_SECRET
//
// Issuer: http://127.0.0.1:PORT. One confidential client (client_secret_basic, authorization
// code flow, PKCE required) whose only redirect URI is REDIRECT_URI (Vaidya's callback).
// Every account exists; its claims are `sub` = `preferred_username` = the name typed in.
//
// The sign-in and consent pages are our own small forms (not the library's development
// forms), so that a test can say which authentication methods were used:
//   GET  /interaction/:uid          the form for the current prompt (login or consent)
//   POST /interaction/:uid/login    login=<name>&amr=pwd+otp   (amr optional, space-separated:
//                                   becomes the ID token's `amr` claim)
//   POST /interaction/:uid/confirm  grant what the client asked for
//   GET  /interaction/:uid/abort    the user refuses: the client gets error=access_denied
// Prints "oidc-provider listening on http://127.0.0.1:PORT" when ready.

import http from 'node:http';
import Provider from 'oidc-provider';

const [port, redirectUri, clientId, clientSecret] = process.argv.slice(2);
if (!port || !redirectUri || !clientId || !clientSecret) {
  console.error('usage: node provider.js PORT REDIRECT_URI CLIENT_ID CLIENT_SECRET');
  process.exit(2);
}
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: [redirectUri],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        return { sub: id, preferred_username: id, name: `Test user ${id}` };
      },
    };
  },
  claims: { openid: ['sub', 'amr'], profile: ['preferred_username', 'name'] },
  // Put the scope's claims into the ID token (as most providers do), not only userinfo.
  conformIdTokenClaims: false,
  features: { devInteractions: { enabled: false } },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  pkce: { required: () => true },
  cookies: { keys: ['vaidya-test-only-cookie-key'] },
});

function escape(s) {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function page(res, title, body) {
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(`<!doctype html><html><head><title>${escape(title)}</title></head><body><h1>${escape(title)}</h1>${body}</body></html>`);
}

async function readForm(req) {
  let text = '';
  for await (const chunk of req) text += chunk;
  return new URLSearchParams(text);
}

async function interaction(req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) throw new Error('interaction mismatch');
  const { prompt, params, session, grantId } = details;
  if (req.method === 'GET' && action === '') {
    if (prompt.name === 'login') {
      return page(res, 'Sign-in', `<form method="post" action="/interaction/${escape(uid)}/login">
<input name="login" autofocus> <input name="amr" placeholder="pwd otp"> <button type="submit">Sign-in</button></form>`);
    }
    return page(res, 'Authorize', `<form method="post" action="/interaction/${escape(uid)}/confirm">
<p>${escape(params.client_id)} asks for: ${escape(params.scope)}</p><button type="submit">Continue</button></form>`);
  }
  if (req.method === 'POST' && action === 'login' && prompt.name === 'login') {
    const form = await readForm(req);
    const login = { accountId: form.get('login') || '' };
    const amr = (form.get('amr') || '').split(/\s+/).filter(Boolean);
    if (amr.length) login.amr = amr;
    return provider.interactionFinished(req, res, { login }, { mergeWithLastSubmission: false });
  }
  if (req.method === 'POST' && action === 'confirm' && prompt.name === 'consent') {
    const grant = grantId ? await provider.Grant.find(grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    const missing = prompt.details;
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    const id = await grant.save();
    const consent = grantId ? {} : { grantId: id };
    return provider.interactionFinished(req, res, { consent }, { mergeWithLastSubmission: true });
  }
  if (req.method === 'GET' && action === 'abort') {
    return provider.interactionFinished(req, res,
      { error: 'access_denied', error_description: 'the user refused' }, { mergeWithLastSubmission: false });
  }
  res.writeHead(400, { 'content-type': 'text/plain' });
  res.end(`unexpected ${req.method} for prompt ${prompt.name}\n`);
}

const handle = provider.callback();
const server = http.createServer((req, res) => {
  const m = /^\/interaction\/([\w-]+)(?:\/(login|confirm|abort))?$/.exec(req.url.split('?')[0]);
  if (!m) return handle(req, res);
  interaction(req, res, m[1], m[2] || '').catch((err) => {
    console.error(err);
    if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
    res.end(`interaction failed: ${err.message}\n`);
  });
});
server.listen(Number(port), '127.0.0.1', () => {
  console.log(`oidc-provider listening on ${issuer}`);
});
// Stop when the test that started us goes away (its end of our stdin closes).
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
