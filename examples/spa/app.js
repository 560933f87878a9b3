// The example SPA of the gatehouse token handler. It never sees a token: the OAuth agent under
// `basePath` runs the code flow and keeps the tokens in encrypted HttpOnly cookies; API calls go
// through the gateway with `credentials: 'include'`. The only secret here is the CSRF token,
// kept in a variable (not in storage): it proves to the gateway that a write came from this page.

const $ = (id) => document.getElementById(id);

/** { gatewayUrl, basePath, apiPath, csrfHeader } from the server that serves this page. */
let config;
/** The CSRF token bound to the session; null when logged out. Memory only. */
let csrf = null;

class AgentError extends Error {
  constructor(status, problem) {
    super(problem?.detail || `HTTP ${status}`);
    this.status = status;
    this.code = problem?.code;
    this.oauthError = problem?.error;
  }
}

async function agent(path, { method = 'POST', body } = {}) {
  const headers = {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (csrf) headers[config.csrfHeader] = csrf;
  let res;
  try {
    res = await fetch(config.gatewayUrl + config.basePath + path, {
      method,
      headers,
      credentials: 'include',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new AgentError(0, { code: 'network', detail: `gatehouse at ${config.gatewayUrl} could not be reached (or refused this origin)` });
  }
  const text = await res.text();
  const data = text ? JSON.parse(text) : null;
  if (!res.ok) throw new AgentError(res.status, data);
  return data;
}

function setStatus(state, text) {
  const el = $('status');
  el.dataset.state = state;
  el.textContent = text;
  const loggedIn = state === 'logged-in';
  $('login').disabled = loggedIn;
  for (const id of ['call-api', 'create-order', 'refresh', 'logout']) $(id).disabled = !loggedIn;
}

function showError(err) {
  $('error').textContent = err ? `${err.code ?? 'error'}${err.oauthError ? ` (${err.oauthError})` : ''}: ${err.message}` : '';
}

function show(value) {
  $('output').textContent = typeof value === 'string' ? value : JSON.stringify(value, null, 2);
}

async function showUser() {
  const claims = await agent('/userinfo', { method: 'GET' });
  $('user').textContent = `Logged in as ${claims.name ?? claims.sub}`;
  setStatus('logged-in', `Logged in (${claims.sub})`);
}

async function loggedOut() {
  csrf = null;
  $('user').textContent = '';
  setStatus('logged-out', 'Logged out');
}

/** On every page load: hand the URL to the agent (it finishes a login, or reports the session). */
async function pageLoad() {
  try {
    const result = await agent('/login/end', { body: { pageUrl: location.href } });
    if (result.handled) history.replaceState(null, '', '/');
    if (result.isLoggedIn) {
      csrf = result.csrf;
      await showUser();
    } else {
      await loggedOut();
    }
  } catch (err) {
    showError(err);
    history.replaceState(null, '', '/');
    // The URL was a failed or replayed login; ask again about the session itself.
    const result = await agent('/login/end', { body: { pageUrl: location.origin + '/' } }).catch(() => ({ isLoggedIn: false }));
    if (result.isLoggedIn) {
      csrf = result.csrf;
      await showUser();
    } else {
      await loggedOut();
    }
  }
}

async function login() {
  showError(null);
  const { authorizationRequestUrl } = await agent('/login/start');
  location.assign(authorizationRequestUrl);
}

async function refresh() {
  await agent('/refresh');
}

/** Call the API; on a 401 refresh once and retry (the access token may have expired). */
async function callApi(method = 'GET', body) {
  const send = () => {
    const headers = {};
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (method !== 'GET' && csrf) headers[config.csrfHeader] = csrf;
    return fetch(config.gatewayUrl + config.apiPath, {
      method,
      headers,
      credentials: 'include',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  };
  let res = await send();
  if (res.status === 401) {
    try {
      await refresh();
    } catch (err) {
      await loggedOut();
      throw err;
    }
    res = await send();
  }
  const text = await res.text();
  const data = text ? JSON.parse(text) : null;
  if (!res.ok) throw new AgentError(res.status, data);
  return data;
}

async function logout() {
  const { url } = await agent('/logout');
  await loggedOut();
  if (url) location.assign(url);
}

function on(id, action) {
  $(id).addEventListener('click', async () => {
    showError(null);
    try {
      await action();
    } catch (err) {
      showError(err);
    }
  });
}

async function main() {
  config = await (await fetch('/config.json')).json();
  on('login', login);
  on('call-api', async () => show(await callApi()));
  on('create-order', async () => show(await callApi('POST', { item: 'coffee', quantity: 1 })));
  on('refresh', async () => {
    await refresh();
    show('Tokens refreshed.');
  });
  on('logout', logout);
  await pageLoad();
}

main().catch((err) => {
  showError(err);
  setStatus('error', 'The demo could not start');
});
