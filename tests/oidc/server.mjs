// OAuth 2.0 authorization server for the mtls-bound-token interop tests.
//
//   node server.mjs CONFIG.json
//
// Runs oidc-provider on plain HTTP (127.0.0.1:listen_port) behind a
// TLS-terminating proxy such as nginx. The proxy verifies the client
// certificate and forwards it, URL-escaped like nginx's
// `$ssl_client_escaped_cert`, in the header named by `certificate_header`.
//
// Only what the tests need is enabled: the client_credentials grant for
// tls_client_auth clients with certificate-bound access tokens (RFC 8705),
// resource indicators (RFC 8707) selecting JWT (RFC 9068) or opaque tokens,
// introspection (RFC 7662), revocation (RFC 7009), discovery and JWKS.
//
// On success exactly one line, `listening on 127.0.0.1:PORT`, goes to stdout;
// everything else (errors, provider warnings) goes to stderr. A bad config
// exits with status 2, a failure to listen with status 1.

import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import {
  X509Certificate, createPrivateKey, createPublicKey, randomBytes, sign, verify,
} from 'node:crypto';
import { argv, exit } from 'node:process';

import Provider, { errors } from 'oidc-provider';

const SCOPES = ['read', 'admin'];
const RESOURCE_KINDS = new Set(['jwt', 'opaque']);
const SUBJECT_PROPERTIES = [
  'tls_client_auth_subject_dn',
  'tls_client_auth_san_dns',
  'tls_client_auth_san_uri',
  'tls_client_auth_san_ip',
  'tls_client_auth_san_email',
];

function fail(message) {
  console.error(`server.mjs: ${message}`);
  exit(2);
}

// ---------------------------------------------------------------------------
// Configuration

function isObject(value) {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function nonEmptyString(value) {
  return typeof value === 'string' && value.length > 0;
}

function loadConfig(path) {
  let config;
  try {
    config = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    fail(`cannot read config ${path}: ${err.message}`);
  }
  if (!isObject(config)) fail('config must be a JSON object');

  let issuer;
  try {
    issuer = new URL(config.issuer);
  } catch {
    fail('issuer must be an absolute URL');
  }
  if (issuer.protocol !== 'https:' && issuer.protocol !== 'http:') {
    fail('issuer must be an http(s) URL');
  }
  if (issuer.search || issuer.hash) fail('issuer must not have a query or fragment');
  // The provider's routes are served at the root, so discovery would not
  // point under an issuer with a path.
  if (issuer.pathname !== '/') fail('issuer must not have a path');

  const port = config.listen_port;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    fail('listen_port must be an integer between 0 and 65535');
  }

  if (!nonEmptyString(config.certificate_header) || !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(config.certificate_header)) {
    fail('certificate_header must be an HTTP header name');
  }

  if (!isObject(config.jwks) || !Array.isArray(config.jwks.keys) || config.jwks.keys.length === 0) {
    fail('jwks must be a JWK Set with at least one key');
  }
  config.jwks.keys.forEach((jwk, i) => {
    if (!isObject(jwk) || jwk.kty !== 'EC' || jwk.crv !== 'P-256' || !nonEmptyString(jwk.d)) {
      fail(`jwks.keys[${i}] must be a private EC P-256 JWK`);
    }
    if (!nonEmptyString(jwk.kid)) fail(`jwks.keys[${i}] must have a kid`);
    if (jwk.alg !== 'ES256') fail(`jwks.keys[${i}] must have alg ES256`);
    // The key must work: sign with d, verify with x/y.
    let usable;
    try {
      const probe = Buffer.from('mtls-bound-token key probe');
      const privateKey = createPrivateKey({ key: jwk, format: 'jwk' });
      const publicKey = createPublicKey({
        key: { kty: 'EC', crv: 'P-256', x: jwk.x, y: jwk.y }, format: 'jwk',
      });
      usable = verify('sha256', probe, publicKey, sign('sha256', probe, privateKey));
    } catch (err) {
      fail(`jwks.keys[${i}] is not a usable private key: ${err.message}`);
    }
    if (!usable) fail(`jwks.keys[${i}]: d does not match x/y`);
  });
  const kids = config.jwks.keys.map((jwk) => jwk.kid);
  if (new Set(kids).size !== kids.length) fail('jwks keys must have distinct kid values');

  if (!Array.isArray(config.clients) || config.clients.length === 0) {
    fail('clients must be a non-empty array');
  }
  const ids = new Set();
  config.clients.forEach((client, i) => {
    if (!isObject(client) || !nonEmptyString(client.client_id)) {
      fail(`clients[${i}].client_id must be a non-empty string`);
    }
    const given = SUBJECT_PROPERTIES.filter((prop) => prop in client);
    if (given.length !== 1 || !nonEmptyString(client[given[0]])) {
      fail(`clients[${i}] must have exactly one of ${SUBJECT_PROPERTIES.join(', ')}`);
    }
    const unknown = Object.keys(client).filter((key) => key !== 'client_id' && !SUBJECT_PROPERTIES.includes(key));
    if (unknown.length) fail(`clients[${i}] has unknown properties: ${unknown.join(', ')}`);
    if (given[0] === 'tls_client_auth_subject_dn') {
      try {
        parseDn(client.tls_client_auth_subject_dn);
      } catch (err) {
        fail(`clients[${i}].tls_client_auth_subject_dn: ${err.message}`);
      }
    }
    if (ids.has(client.client_id)) fail(`duplicate client_id ${client.client_id}`);
    ids.add(client.client_id);
  });

  const rs = config.introspection_client;
  if (!isObject(rs) || !nonEmptyString(rs.client_id) || !nonEmptyString(rs.client_secret)) {
    fail('introspection_client must have client_id and client_secret');
  }
  if (ids.has(rs.client_id)) fail(`duplicate client_id ${rs.client_id}`);

  if (!isObject(config.resources) || Object.keys(config.resources).length === 0) {
    fail('resources must be a non-empty object');
  }
  for (const [resource, kind] of Object.entries(config.resources)) {
    let url;
    try {
      url = new URL(resource);
    } catch {
      fail(`resource ${resource} must be an absolute URI`);
    }
    if (url.hash || resource.includes('#')) fail(`resource ${resource} must not have a fragment`);
    if (!RESOURCE_KINDS.has(kind)) fail(`resource ${resource} must be "jwt" or "opaque"`);
  }

  return config;
}

// ---------------------------------------------------------------------------
// Distinguished names (RFC 4514)
//
// A DN is compared as a sequence of RDNs, each a set of attribute type/value
// pairs. Attribute types compare case-insensitively, values exactly after
// unescaping; whitespace around `,`, `+` and `=` is ignored.

function splitUnescaped(text, separator) {
  const parts = [];
  let current = '';
  for (let i = 0; i < text.length; i += 1) {
    const c = text[i];
    if (c === '\\' && i + 1 < text.length) {
      current += c + text[i + 1];
      i += 1;
    } else if (c === separator) {
      parts.push(current);
      current = '';
    } else {
      current += c;
    }
  }
  parts.push(current);
  return parts;
}

function unescapeValue(text) {
  // Only unescaped trailing/leading whitespace is insignificant.
  let start = 0;
  let end = text.length;
  while (start < end && text[start] === ' ') start += 1;
  while (end > start && text[end - 1] === ' ' && text[end - 2] !== '\\') end -= 1;
  const value = text.slice(start, end);

  const bytes = [];
  for (let i = 0; i < value.length; i += 1) {
    const c = value[i];
    if (c === '\\') {
      const hex = value.slice(i + 1, i + 3);
      if (/^[0-9A-Fa-f]{2}$/.test(hex)) {
        bytes.push(parseInt(hex, 16));
        i += 2;
      } else if (i + 1 < value.length) {
        bytes.push(...Buffer.from(value[i + 1], 'utf8'));
        i += 1;
      } else {
        throw new Error('dangling backslash');
      }
    } else {
      bytes.push(...Buffer.from(c, 'utf8'));
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

// Returns an array of RDNs in the order written, each a sorted array of
// "TYPE=value" strings.
function parseDn(text) {
  if (typeof text !== 'string' || text.trim() === '') throw new Error('empty DN');
  return splitUnescaped(text, ',').map((rdn) => splitUnescaped(rdn, '+').map((ava) => {
    const eq = ava.indexOf('=');
    if (eq <= 0) throw new Error(`malformed attribute "${ava.trim()}"`);
    const type = ava.slice(0, eq).trim().toUpperCase();
    if (!/^([A-Z][A-Z0-9-]*|[0-9]+(\.[0-9]+)+)$/.test(type)) {
      throw new Error(`malformed attribute type "${type}"`);
    }
    return `${type}=${unescapeValue(ava.slice(eq + 1))}`;
  }).sort());
}

// Node prints a certificate subject one RDN per line, in certificate
// (most significant first) order, values escaped as in RFC 2253, several
// attributes of one RDN joined by " + ". RFC 4514 writes RDNs in reverse.
function certificateSubjectRfc4514(cert) {
  return cert.subject.split('\n').filter(Boolean).reverse()
    .map((rdn) => rdn.split(' + ').join('+'))
    .join(',');
}

function dnEquals(a, b) {
  if (a.length !== b.length) return false;
  return a.every((rdn, i) => rdn.length === b[i].length && rdn.every((ava, j) => ava === b[i][j]));
}

// ---------------------------------------------------------------------------
// Client certificate from the proxy

function certificateMatcher(certificateHeader) {
  const parsed = new WeakMap();

  function getCertificate(ctx) {
    if (parsed.has(ctx)) return parsed.get(ctx);
    let cert;
    const raw = ctx.get(certificateHeader);
    if (raw) {
      try {
        const pem = decodeURIComponent(raw);
        cert = new X509Certificate(pem);
      } catch (err) {
        console.error(`${certificateHeader}: unusable client certificate: ${err.message}`);
        cert = undefined;
      }
    }
    parsed.set(ctx, cert);
    return cert;
  }

  // The proxy has verified the chain (nginx `ssl_verify_client on`); a
  // certificate only reaches this header after that check.
  function certificateAuthorized(ctx) {
    return getCertificate(ctx) !== undefined;
  }

  function subjectAltNames(cert) {
    // e.g. `DNS:a.example, DNS:b.example, IP Address:127.0.0.1, URI:https://x`
    const names = cert.subjectAltName;
    if (!names) return [];
    return names.split(/, (?=[A-Za-z ]+:)/).map((entry) => {
      const colon = entry.indexOf(':');
      let value = entry.slice(colon + 1);
      if (value.startsWith('"')) {
        try {
          value = JSON.parse(value);
        } catch {
          // keep as printed
        }
      }
      return { type: entry.slice(0, colon), value };
    });
  }

  function sanMatches(cert, type, expected, normalize = (v) => v) {
    return subjectAltNames(cert)
      .some((san) => san.type === type && normalize(san.value) === normalize(expected));
  }

  function certificateSubjectMatches(ctx, property, expected) {
    const cert = getCertificate(ctx);
    if (!cert) return false;
    switch (property) {
      case 'tls_client_auth_subject_dn':
        try {
          return dnEquals(parseDn(certificateSubjectRfc4514(cert)), parseDn(expected));
        } catch (err) {
          console.error(`cannot compare subject DN: ${err.message}`);
          return false;
        }
      case 'tls_client_auth_san_dns':
        return sanMatches(cert, 'DNS', expected, (v) => v.toLowerCase());
      case 'tls_client_auth_san_uri':
        return sanMatches(cert, 'URI', expected);
      case 'tls_client_auth_san_ip':
        return sanMatches(cert, 'IP Address', expected, (v) => v.toLowerCase());
      case 'tls_client_auth_san_email':
        return sanMatches(cert, 'email', expected);
      default:
        return false;
    }
  }

  return { getCertificate, certificateAuthorized, certificateSubjectMatches };
}

// ---------------------------------------------------------------------------
// Storage: an unbounded in-process map (tokens live only as long as the
// process). Written out so that the provider does not fall back to its
// size-limited development adapter.

const storage = new Map();

function storageKey(model, id) {
  return `${model}:${id}`;
}

function stored(key) {
  const entry = storage.get(key);
  if (!entry) return undefined;
  if (entry.expiresAt !== undefined && entry.expiresAt <= Date.now()) {
    storage.delete(key);
    return undefined;
  }
  return entry;
}

class MapAdapter {
  constructor(model) {
    this.model = model;
  }

  async upsert(id, payload, expiresIn) {
    const expiresAt = expiresIn ? Date.now() + expiresIn * 1000 : undefined;
    storage.set(storageKey(this.model, id), { payload: { ...payload }, expiresAt });
  }

  async find(id) {
    return stored(storageKey(this.model, id))?.payload;
  }

  async findByUid(uid) {
    for (const [key, entry] of storage) {
      if (key.startsWith(`${this.model}:`) && entry.payload.uid === uid) return this.find(key.slice(this.model.length + 1));
    }
    return undefined;
  }

  async findByUserCode(userCode) {
    for (const [key, entry] of storage) {
      if (key.startsWith(`${this.model}:`) && entry.payload.userCode === userCode) return this.find(key.slice(this.model.length + 1));
    }
    return undefined;
  }

  async consume(id) {
    const entry = stored(storageKey(this.model, id));
    if (entry) entry.payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) {
    storage.delete(storageKey(this.model, id));
  }

  async revokeByGrantId(grantId) {
    for (const [key, entry] of storage) {
      if (entry.payload.grantId === grantId) storage.delete(key);
    }
  }
}

// ---------------------------------------------------------------------------
// Provider

function buildProvider(config) {
  const issuer = new URL(config.issuer);
  const signingKid = config.jwks.keys[0].kid;
  const { client_id: introspectorId, client_secret: introspectorSecret } = config.introspection_client;

  const clients = config.clients.map((client) => ({
    ...client,
    token_endpoint_auth_method: 'tls_client_auth',
    tls_client_certificate_bound_access_tokens: true,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    scope: SCOPES.join(' '),
  }));
  clients.push({
    client_id: introspectorId,
    client_secret: introspectorSecret,
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: [],
    response_types: [],
    redirect_uris: [],
  });

  const provider = new Provider(config.issuer, {
    adapter: MapAdapter,
    jwks: config.jwks,
    clients,
    scopes: SCOPES,
    responseTypes: [],
    clientAuthMethods: ['tls_client_auth', 'client_secret_basic'],
    clientDefaults: {
      grant_types: [],
      response_types: [],
      id_token_signed_response_alg: 'ES256',
      token_endpoint_auth_method: 'tls_client_auth',
    },
    enabledJWA: {
      idTokenSigningAlgValues: ['ES256'],
    },
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    features: {
      devInteractions: { enabled: false },
      rpInitiatedLogout: { enabled: false },
      userinfo: { enabled: false },
      pushedAuthorizationRequests: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: {
        enabled: true,
        // The resource server may introspect any token; a client only its own.
        async allowedPolicy(ctx, client, token) {
          return client.clientId === introspectorId || client.clientId === token.clientId;
        },
      },
      revocation: { enabled: true },
      mTLS: {
        enabled: true,
        certificateBoundAccessTokens: true,
        tlsClientAuth: true,
        ...certificateMatcher(config.certificate_header),
      },
      resourceIndicators: {
        enabled: true,
        async defaultResource() {
          return undefined;
        },
        async useGrantedResource() {
          return false;
        },
        async getResourceServerInfo(ctx, resourceIndicator) {
          const kind = Object.hasOwn(config.resources, resourceIndicator)
            ? config.resources[resourceIndicator] : undefined;
          if (!kind) throw new errors.InvalidTarget(`unknown resource ${resourceIndicator}`);
          const info = {
            scope: SCOPES.join(' '),
            audience: resourceIndicator,
            accessTokenFormat: kind,
          };
          if (kind === 'jwt') info.jwt = { sign: { alg: 'ES256', kid: signingKid } };
          return info;
        },
      },
    },
  });

  // Behind the TLS terminator: trust X-Forwarded-Proto/-Host. When the proxy
  // leaves them out, take them from the issuer so that every URL the
  // provider builds (discovery, jwks_uri, ...) is under the issuer.
  provider.proxy = true;
  provider.use(async (ctx, next) => {
    const { headers } = ctx.req;
    if (!headers['x-forwarded-proto']) headers['x-forwarded-proto'] = issuer.protocol.slice(0, -1);
    if (!headers['x-forwarded-host']) headers['x-forwarded-host'] = issuer.host;
    await next();
  });

  provider.on('server_error', (ctx, err) => {
    console.error(`server_error ${ctx.method} ${ctx.path}:`, err);
  });
  for (const event of ['grant.error', 'introspection.error', 'revocation.error', 'jwks.error', 'discovery.error']) {
    provider.on(event, (ctx, err) => {
      const detail = err.error_detail ? ` (${err.error_detail})` : '';
      console.error(`${event} ${ctx.method} ${ctx.path}: ${err.error || err.name}: ${err.error_description || err.message}${detail}`);
    });
  }

  return provider;
}

// ---------------------------------------------------------------------------

if (argv.length !== 3) {
  console.error('usage: node server.mjs CONFIG.json');
  exit(2);
}

const config = loadConfig(argv[2]);
let provider;
try {
  provider = buildProvider(config);
} catch (err) {
  fail(`invalid configuration: ${err.message}`);
}

const server = createServer(provider.callback());
server.on('error', (err) => {
  console.error(`server.mjs: ${err.message}`);
  exit(1);
});
server.listen(config.listen_port, '127.0.0.1', () => {
  console.log(`listening on 127.0.0.1:${server.address().port}`);
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    server.close(() => exit(0));
    server.closeAllConnections();
  });
}
