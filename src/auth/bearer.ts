/** The token of an `Authorization: Bearer <token>` header (scheme case-insensitive), if it is one. */
export function bearerToken(authorization: string | undefined): string | undefined {
  return authorization ? /^bearer\s+(\S+)\s*$/i.exec(authorization)?.[1] : undefined;
}
