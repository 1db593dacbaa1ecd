/**
 * Renders the documents of a contracting package (version 2) as real PDFs
 * with pdfkit. Output is deterministic for the same input (fixed creation
 * date and document id), so the recorded sha256 identifies the content.
 */
import type PDFKit from 'pdfkit';

/**
 * pdfkit (and its font engine) costs a few hundred ms to load; loaded on the
 * first render, so commands that never render (check-pet-enrollment, the
 * consumer, db:migrate) do not pay for it at start-up.
 */
let pdfkit: typeof PDFKit | undefined;
function loadPdfKit(): typeof PDFKit {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- deliberately lazy, see above
  pdfkit ??= require('pdfkit') as typeof PDFKit;
  return pdfkit;
}

export interface PackageDocumentInput {
  packageId: string;
  ownerGlobalUserId: string;
  pet: { name: string; species: string; breed: string; birthDate: string };
  plan: { code: string; name: string; monthlyPremiumCents: number; reimbursementRatePercent: number; annualLimitCents: number };
  signer: { name: string; email: string };
  /** Day the package was created (YYYY-MM-DD); printed and used as PDF date. */
  issuedOn: string;
}

export interface RenderedDocument {
  kind: string;
  title: string;
  pdf: Buffer;
}

/** The documents a version-2 package asks the owner to sign. */
export const PACKAGE_V2_DOCUMENT_KINDS = ['insurance_application', 'terms_and_conditions'] as const;

function euros(cents: number): string {
  return `EUR ${(cents / 100).toFixed(2)}`;
}

function renderPdf(title: string, issuedOn: string, lines: string[]): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const PDFDocument = loadPdfKit();
    const doc = new PDFDocument({
      size: 'A4',
      margin: 56,
      info: { Title: title, Author: 'PetCover', CreationDate: new Date(`${issuedOn}T00:00:00Z`) },
    });
    const chunks: Buffer[] = [];
    doc.on('data', (chunk: Buffer) => chunks.push(chunk));
    doc.on('end', () => resolve(Buffer.concat(chunks)));
    doc.on('error', reject);
    doc.fontSize(18).text(title);
    doc.moveDown();
    doc.fontSize(11);
    for (const line of lines) doc.text(line);
    doc.moveDown(2);
    doc.text('Signature: ______________________________');
    doc.end();
  });
}

export async function renderPackageDocuments(input: PackageDocumentInput): Promise<RenderedDocument[]> {
  const { pet, plan, signer } = input;
  const application = await renderPdf('Pet insurance application', input.issuedOn, [
    `Package: ${input.packageId} (version 2)`,
    `Issued on: ${input.issuedOn}`,
    `Policy holder: ${signer.name} <${signer.email}> (owner ${input.ownerGlobalUserId})`,
    '',
    `Pet: ${pet.name}, ${pet.species}, ${pet.breed}, born ${pet.birthDate}`,
    `Plan: ${plan.name} (${plan.code})`,
    `Monthly premium: ${euros(plan.monthlyPremiumCents)}`,
    `Reimbursement rate: ${plan.reimbursementRatePercent} %`,
    `Annual limit: ${euros(plan.annualLimitCents)}`,
  ]);
  const terms = await renderPdf('Terms and conditions', input.issuedOn, [
    `Package: ${input.packageId} (version 2)`,
    '',
    '1. Cover starts on the day the contract is created and renews monthly.',
    `2. Eligible vet bills are reimbursed at ${plan.reimbursementRatePercent} % up to ${euros(plan.annualLimitCents)} a year.`,
    '3. Pre-existing conditions are excluded.',
    '4. Either party may cancel at the end of any month.',
  ]);
  return [
    { kind: 'insurance_application', title: 'Pet insurance application', pdf: application },
    { kind: 'terms_and_conditions', title: 'Terms and conditions', pdf: terms },
  ];
}
