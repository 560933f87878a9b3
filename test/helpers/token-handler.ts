import { followDevPages } from './issuer.js';

/**
 * A token-handler session, as the SPA makes one: `login/start` from the SPA's origin, the
 * development authorization server's login and consent pages, `login/end` with the callback URL.
 * Resolves with the `Cookie` header value that carries the session.
 *
 * @example
 * ```ts
 * const cookie = await tokenHandlerSession(gw.url, 'https://app.example.com', 'https://app.example.com/callback');
 * ```
 */
export async function tokenHandlerSession(gatewayUrl: string, spaOrigin: string, redirectUri: string, basePath = '/tokenhandler'): Promise<string> {
  const cookies = new Map<string, string>();
  const store = (res: Response) => {
    for (const line of res.headers.getSetCookie()) {
      const pair = line.split(';')[0]!;
      const eq = pair.indexOf('=');
      if (/Max-Age=0/.test(line)) cookies.delete(pair.slice(0, eq));
      else cookies.set(pair.slice(0, eq), pair.slice(eq + 1));
    }
  };
  const header = () => [...cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  const start = await fetch(`${gatewayUrl}${basePath}/login/start`, { method: 'POST', headers: { origin: spaOrigin } });
  store(start);
  const { authorizationRequestUrl } = (await start.json()) as { authorizationRequestUrl: string };
  const { url } = await followDevPages(authorizationRequestUrl, { stopAt: redirectUri });
  const end = await fetch(`${gatewayUrl}${basePath}/login/end`, {
    method: 'POST',
    headers: { origin: spaOrigin, cookie: header(), 'content-type': 'application/json' },
    body: JSON.stringify({ pageUrl: url.href }),
  });
  store(end);
  const { isLoggedIn } = (await end.json()) as { isLoggedIn: boolean };
  if (!isLoggedIn) throw new Error('the token handler did not log in');
  return header();
}
