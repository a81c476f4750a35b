import { decodeJwt, SignJWT } from 'jose';
import { TEST_JWT_SECRET } from './test-server.ts';

/** A token for an existing session, signed like the server's but expiring when the test says. */
export async function tokenExpiringIn(accessToken: string, seconds: number, secret = TEST_JWT_SECRET) {
  const { sub, sid } = decodeJwt(accessToken);
  return new SignJWT({ sid })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(sub ?? '')
    .setIssuer('sinergi')
    .setAudience('sinergi-console')
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + seconds)
    .sign(new TextEncoder().encode(secret));
}
