/** The three engine permission strings a token's `permissions` claim may list (docs/cli.md#rivulet-token-mint). */
export const PERMISSIONS = {
  tunnelsCreateDelete: 'tunnels.tunnels.create-delete',
  streamsCreateDelete: 'tunnels.streams.create-delete',
  resourcesReadOnly: 'tunnels.resources.read-only',
} as const;

export type Permission = (typeof PERMISSIONS)[keyof typeof PERMISSIONS];

export const ALL_PERMISSIONS: readonly Permission[] = Object.values(PERMISSIONS);

export function isPermission(value: string): value is Permission {
  return (ALL_PERMISSIONS as readonly string[]).includes(value);
}
