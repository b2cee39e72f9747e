import { writeDevCertificates } from '../certs/dev-ca.js';
import { FilesExistError } from '../errors.js';

export interface CertsDevOptions {
  host: string;
  san: string[];
  out: string;
  days: number;
  force: boolean;
}

/** `rivulet certs dev`: a local CA and a server certificate for development (docs/cli.md#rivulet-certs-dev). */
export async function runCertsDevCommand(options: CertsDevOptions): Promise<void> {
  try {
    const files = await writeDevCertificates({
      host: options.host.toLowerCase().replace(/\.$/, ''),
      extraSans: options.san,
      outDir: options.out,
      days: options.days,
      force: options.force,
    });
    process.stdout.write(
      [
        `CA certificate:     ${files.caCert}`,
        `CA key:             ${files.caKey}`,
        `server certificate: ${files.cert}`,
        `server key:         ${files.key}`,
        '',
        'Trust the CA (development only, never in production):',
        `  curl --cacert ${files.caCert} …`,
        `  NODE_EXTRA_CA_CERTS=${files.caCert} node …`,
        `  rivulet … --engine-tls-ca-file ${files.caCert}`,
        '',
      ].join('\n'),
    );
  } catch (error) {
    const message = error instanceof FilesExistError ? error.message : `cannot write certificates: ${(error as Error).message}`;
    process.stderr.write(`certs dev: ${message}\n`);
    process.exit(1);
  }
}
