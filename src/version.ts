import fs from 'node:fs';

/** The package version: `rivulet --version`, ServerDetails.version, ClientDetails.version. */
export const VERSION: string = (
  JSON.parse(fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
).version;
