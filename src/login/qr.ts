/**
 * The device login's verification URI as a QR code for the terminal, so a
 * phone can open it: two rows of modules per line (half blocks), dark on a
 * light background set with ANSI colours, which reads on dark and light
 * terminals alike. The same URI always gives the same string.
 */
import QRCode from 'qrcode';

/** Longest URI drawn: a larger code no longer fits a terminal (nor scans from one); the URI is printed anyway. */
export const MAX_QR_URI = 512;

/** `uri` as a terminal QR code (lines ending in newlines), or null when it is too long to draw usefully. */
export async function terminalQr(uri: string): Promise<string | null> {
  if (uri === '' || uri.length > MAX_QR_URI) return null;
  return QRCode.toString(uri, { type: 'terminal', small: true, errorCorrectionLevel: 'L' });
}
