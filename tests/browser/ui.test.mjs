// The web UI in a real browser (Debian's headless Chromium, driven by playwright-core): signing
// in with a second factor, the privacy officer's "who accessed a record" screen, the Hindi
// switch, refusals shown on the page, CSRF, signing out. Screenshots go to
// target/screenshots/ (VAIDYA_SCREENSHOTS to change), for a person to look at.
//
// Run by ./scripts/test after the release build: VAIDYA_BIN=target/release/vaidya node --test tests/browser/

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createHmac } from 'node:crypto';
import { chromium } from 'playwright-core';

const ROOT = resolve(import.meta.dirname, '../..');
const BIN = process.env.VAIDYA_BIN ?? join(ROOT, 'target/release/vaidya');
const CHROMIUM = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';
const SHOTS = process.env.VAIDYA_SCREENSHOTS ?? join(ROOT, 'target/screenshots');
const NEW_PASSWORD = 'correct horse battery staple 42';

let server, base, data, browser;

// RFC 6238 TOTP (SHA-1, 6 digits, 30 s), what an authenticator app computes.
function totp(secretBase32, unixSeconds) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const c of secretBase32.replace(/=+$/, '').toUpperCase()) bits += alphabet.indexOf(c).toString(2).padStart(5, '0');
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(unixSeconds / 30)));
  const h = createHmac('sha1', key).update(counter).digest();
  const o = h[h.length - 1] & 0xf;
  return String((h.readUInt32BE(o) & 0x7fffffff) % 1_000_000).padStart(6, '0');
}

const vaidya = (...args) => execFileSync(BIN, args, { encoding: 'utf8' });

async function json(method, path, body, token) {
  const headers = { 'content-type': 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  const r = await fetch(base + path, { method, headers, body: body && JSON.stringify(body) });
  return { status: r.status, body: await r.json().catch(() => null) };
}

// A staff account ready for the browser: one-time password changed, TOTP enrolled where the
// role needs it. Returns what the person types, and (TOTP roles) the code for their browser login.
async function account(name, role, ...extra) {
  const oneTime = vaidya('user', 'add', '--data', data, '--name', name, '--role', role, ...extra).match(/One-time password: (\S+)/)[1];
  let code, next;
  if (['privacy-officer', 'auditor', 'admin'].includes(role)) {
    const secret = vaidya('user', 'totp', '--data', data, '--name', name).match(/Secret: (\S+)/)[1];
    const now = Date.now() / 1000;
    code = totp(secret, now);
    next = totp(secret, now + 30); // the next step: a code is accepted once, one step of skew
  }
  const login = await json('POST', '/auth/login', { user: name, password: oneTime, totp: code });
  assert.equal(login.status, 200, JSON.stringify(login.body));
  const changed = await json('POST', '/auth/password', { old: oneTime, new: NEW_PASSWORD }, login.body.token);
  assert.equal(changed.status, 200, JSON.stringify(changed.body));
  return { name, password: NEW_PASSWORD, code: next };
}

async function signIn(page, who) {
  await page.fill('#user', who.name);
  await page.fill('#password', who.password);
  if (who.code) await page.fill('#totp', who.code);
  await page.press('#password', 'Enter');
  await page.waitForLoadState('domcontentloaded');
}

const shot = (page, name) => page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  data = mkdtempSync(join(tmpdir(), 'vaidya-ui-'));
  server = spawn(BIN, ['serve', '--demo', '--data', data, '--listen', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  base = await new Promise((ok, fail) => {
    let out = '';
    const timer = setTimeout(() => fail(new Error(`the server did not start:\n${out}`)), 60_000);
    server.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/Vaidya is listening on (http:\/\/\S+)/);
      if (m) { clearTimeout(timer); ok(m[1]); }
    });
    server.stderr.on('data', (d) => { out += d; });
    server.on('exit', (c) => fail(new Error(`the server exited (${c}):\n${out}`)));
  });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
});

after(async () => {
  await browser?.close();
  if (server && server.exitCode === null) {
    const exited = new Promise((ok) => server.on('exit', ok));
    server.kill('SIGTERM');
    await exited;
  }
  if (data) rmSync(data, { recursive: true, force: true });
});

// A demo patient's UHID, and a read of their record by the registration desk.
async function patientSeenByTheDesk() {
  const token = vaidya('token', '--data', data, '--user', 'reg.asha').trim();
  const found = await json('GET', '/fhir/Patient?_count=1', undefined, token);
  assert.equal(found.status, 200);
  const patient = found.body.entry[0].resource;
  const uhid = patient.identifier.find((i) => i.system === 'https://vaidya.dev/fhir/sid/uhid').value;
  assert.equal((await json('GET', `/fhir/Patient/${patient.id}`, undefined, token)).status, 200);
  return uhid;
}

test('the privacy officer signs in with a second factor and sees who accessed a record, in English and Hindi', async () => {
  const uhid = await patientSeenByTheDesk();
  const officer = await account('po.kavita', 'privacy-officer');
  const page = await browser.newPage();

  // Not signed in: the screen sends the officer to sign in first, and back afterwards.
  await page.goto(`${base}/ui/audit`);
  assert.match(page.url(), /\/ui\/login\?next=%2Fui%2Faudit/);
  for (const input of await page.locator('input:not([type=hidden])').all()) {
    const id = await input.getAttribute('id');
    assert.equal(await page.locator(`label[for="${id}"]`).count(), 1, `input #${id} has a label`);
  }
  await shot(page, 'login');
  await signIn(page, officer);
  assert.equal(new URL(page.url()).pathname, '/ui/audit');

  // Keyboard only: the UHID field, then Enter.
  await page.focus('#uhid');
  await page.keyboard.type(uhid);
  await page.keyboard.press('Enter');
  await page.waitForSelector('#trail');
  const rows = await page.locator('#trail tbody tr').allInnerTexts();
  assert.ok(rows.some((r) => r.includes('reg.asha') && r.includes('read')), `the desk's read is listed:\n${rows.join('\n')}`);
  assert.ok(Number(await page.textContent('#total')) >= 2);
  await shot(page, 'audit-trail');

  // हिन्दी: the same page, in Devanagari; the choice stays for the next page.
  await page.click('#lang-switch');
  await page.waitForSelector('#trail');
  assert.equal(await page.getAttribute('html', 'lang'), 'hi');
  assert.match(await page.textContent('h1'), /किसने रिकॉर्ड देखा/);
  await shot(page, 'audit-trail-hi');
  await page.click('#lang-switch');
  assert.equal(await page.getAttribute('html', 'lang'), 'en');

  // A mistyped UHID: the reason, next to the field; nothing else shown.
  await page.fill('#uhid', '12345');
  await page.press('#uhid', 'Enter');
  await page.waitForSelector('#uhid-error');
  assert.match(await page.textContent('#uhid-error'), /not a valid UHID/);
  assert.equal(await page.getAttribute('#uhid', 'aria-invalid'), 'true');
  assert.equal(await page.locator('#trail').count(), 0);

  // Signing out ends the session: the screen asks to sign in again.
  await page.goto(`${base}/ui/`);
  await page.click('text=Sign out');
  await page.waitForURL(/\/ui\/login/);
  await page.goto(`${base}/ui/audit`);
  assert.match(page.url(), /\/ui\/login/);
  await page.close();
});

test('a clerk may not see the audit trail: the page says so', async () => {
  const uhid = await patientSeenByTheDesk();
  const clerk = await account('reg.meena', 'registration');
  const page = await browser.newPage();
  await page.goto(`${base}/ui/login`);
  await signIn(page, clerk);
  assert.match(await page.textContent('#who'), /reg\.meena/);
  await page.goto(`${base}/ui/audit?uhid=${encodeURIComponent(uhid)}`);
  assert.match(await page.textContent('#uhid-error'), /oversight|not allowed|refused|policy/i);
  assert.equal(await page.locator('#trail').count(), 0);
  await shot(page, 'audit-refused');
  await page.close();
});

test('forms without their CSRF token, and wrong passwords, change nothing', async () => {
  // What every page is sent with: a CSP allowing no scripts, and cookies scripts cannot read
  // that no other site can make the browser send.
  const loginPage = await fetch(`${base}/ui/login`);
  assert.match(loginPage.headers.get('content-security-policy'), /default-src 'none'/);
  const csrfCookie = loginPage.headers.get('set-cookie') ?? '';
  for (const flag of ['vaidya_csrf=', 'HttpOnly', 'SameSite=Strict', 'Secure', 'Path=/ui']) assert.ok(csrfCookie.includes(flag), `${flag} in ${csrfCookie}`);

  const clerk = await account('reg.ravi', 'registration');
  // A login posted from elsewhere (no CSRF cookie or field): refused, no session cookie.
  const forged = await fetch(`${base}/ui/login`, {
    method: 'POST', redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ user: clerk.name, password: clerk.password }),
  });
  assert.equal(forged.status, 403);
  assert.ok(!(forged.headers.get('set-cookie') ?? '').includes('vaidya_session='));

  // A wrong password in the browser: the same page, the reason shown, still signed out.
  const page = await browser.newPage();
  await page.goto(`${base}/ui/login`);
  await signIn(page, { ...clerk, password: 'not the password' });
  assert.match(await page.textContent('#login-error'), /password|credentials/i);
  assert.equal((await page.context().cookies()).filter((c) => c.name === 'vaidya_session').length, 0);
  // Signed in, a sign-out with a wrong CSRF field leaves the session alone.
  await signIn(page, clerk);
  const cookies = await page.context().cookies();
  const header = cookies.map((c) => `${c.name}=${c.value}`).join('; ');
  const bad = await fetch(`${base}/ui/logout`, {
    method: 'POST', redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: header },
    body: 'csrf=0123456789abcdef0123456789abcdef',
  });
  assert.equal(bad.status, 403);
  await page.goto(`${base}/ui/`);
  assert.match(await page.textContent('#who'), /reg\.ravi/);
  await page.close();
});

// The newest SMS in the development outbox for a mobile number: its text.
function lastSms(mobile) {
  const dir = join(data, 'sms-outbox');
  const files = readdirSync(dir).filter((f) => f.endsWith(`-${mobile}.txt`)).sort();
  assert.ok(files.length > 0, `an SMS to ${mobile} is in ${dir}`);
  return readFileSync(join(dir, files[files.length - 1]), 'utf8');
}

test('a patient signs in with a code sent by SMS and sees who has seen their record', async () => {
  // Registered at the desk with a mobile number (the UHID is issued then), and looked up.
  const desk = vaidya('token', '--data', data, '--user', 'reg.asha').trim();
  const made = await json('POST', '/fhir/Patient', {
    resourceType: 'Patient', name: [{ family: 'Devi', given: ['Sita'] }], gender: 'female', birthDate: '1980-04-02',
    telecom: [{ system: 'phone', use: 'mobile', value: '+91 98765 43210' }],
  }, desk);
  assert.equal(made.status, 201, JSON.stringify(made.body));
  const uhid = made.body.identifier.find((i) => i.system === 'https://vaidya.dev/fhir/sid/uhid').value;
  assert.equal((await json('GET', `/fhir/Patient/${made.body.id}`, undefined, desk)).status, 200);

  const page = await browser.newPage();
  await page.goto(`${base}/ui/login`);
  await page.click('#patient-link');
  // An unknown mobile number: nothing is sent, and the page does not say whether it exists.
  await page.fill('#who', '90000 00001');
  await page.press('#who', 'Enter');
  assert.match(await page.textContent('#who-error'), /No code could be sent/);
  // Not a UHID or a mobile number at all.
  await page.fill('#who', 'Sita Devi');
  await page.press('#who', 'Enter');
  assert.match(await page.textContent('#who-error'), /UHID \(12 digits/);

  await page.fill('#who', uhid);
  await page.press('#who', 'Enter');
  assert.match(await page.textContent('#sent-to'), /\*{6}3210/);
  const code = lastSms('9876543210').match(/code is (\d{6})/)[1];
  await shot(page, 'patient-code');
  // A wrong code first: said so, and another try is allowed.
  await page.fill('#code', code === '000000' ? '111111' : '000000');
  await page.press('#code', 'Enter');
  assert.match(await page.textContent('#code-error'), /not right/);
  await page.fill('#code', code);
  await page.press('#code', 'Enter');
  await page.waitForURL(/\/ui\/$/);

  await page.click('#my-access-link');
  await page.waitForSelector('#trail');
  const rows = await page.locator('#trail tbody tr').allInnerTexts();
  assert.ok(rows.some((r) => r.includes('reg.asha') && r.includes('read')), `the desk's look is listed:\n${rows.join('\n')}`);
  assert.ok(rows.some((r) => r.includes('reg.asha') && r.includes('create')), `the registration is listed:\n${rows.join('\n')}`);
  await shot(page, 'patient-my-access');
  // Their own trail only: another patient's is refused, on any screen.
  await page.goto(`${base}/ui/audit?uhid=${encodeURIComponent(await patientSeenByTheDesk())}`);
  await page.waitForSelector('#uhid-error');
  assert.equal(await page.locator('#trail').count(), 0);

  // A used code does not sign in again.
  const again = await browser.newPage();
  await again.goto(`${base}/ui/patient/login`);
  await again.fill('#who', '9876543210');
  await again.press('#who', 'Enter');
  const second = lastSms('9876543210').match(/code is (\d{6})/)[1];
  await again.fill('#code', code === second ? '000000' : code);
  await again.press('#code', 'Enter');
  assert.match(await again.textContent('#code-error'), /not right/);
  await page.close();
  await again.close();
});

test('the registration desk searches first, registers with the duplicate check, and a double submit registers once', async () => {
  const clerk = await account('reg.sunita', 'registration');
  const page = await browser.newPage();
  await page.goto(`${base}/ui/login`);
  await signIn(page, clerk);
  await page.click('#desk-link');
  const search = async (q) => {
    await page.fill('#q', q);
    await page.press('#q', 'Enter');
    await page.waitForLoadState('domcontentloaded');
  };
  await search('Kaur');
  assert.match(await page.textContent('#patients'), /Gurpreet Kaur/);
  await search('+91 98100 00003');
  assert.match(await page.textContent('#patients'), /Mohammed Rafi/);
  await search('x');
  assert.match(await page.textContent('#q-error'), /at least two letters/);
  await search('Zzyzx');
  assert.equal(await page.locator('#none-found').count(), 1);
  await shot(page, 'registration-search');

  // An empty form: each problem next to its field; nothing registered.
  await page.click('#register-new');
  await page.click('#register');
  await page.waitForSelector('#given-error');
  for (const field of ['given', 'gender', 'birth']) {
    assert.equal(await page.getAttribute(`#${field}`, 'aria-invalid'), 'true', field);
  }
  await shot(page, 'register-errors');

  // Someone who may already be registered: the desk is shown who, and must confirm.
  await page.fill('#given', 'Gurpreet');
  await page.fill('#family', 'Kaur');
  await page.selectOption('#gender', 'female');
  await page.fill('#age', '43');
  await page.fill('#mobile', '98100 00005');
  await page.click('#register');
  await page.waitForSelector('#duplicates');
  assert.match(await page.textContent('#duplicates'), /Gurpreet Kaur/);
  await shot(page, 'register-duplicates');
  await page.check('#confirm');
  await page.click('#register');
  await page.waitForSelector('#slip-uhid');
  assert.match(await page.textContent('#slip-uhid'), /^\d{4}-\d{4}-\d{4}$/);
  assert.equal(await page.locator('#slip-qr svg').count(), 1, 'the UHID as a QR code');
  await shot(page, 'registration-slip');
  // The slip in Hindi, as it is printed for a Hindi-speaking patient.
  await page.click('#lang-switch');
  assert.match(await page.textContent('main'), /[\u0900-\u097F]{3}/);
  assert.match(await page.textContent('#slip-uhid'), /^\d{4}-\d{4}-\d{4}$/);
  await shot(page, 'registration-slip-hi');
  await page.click('#lang-switch');

  // A double submit (two posts of one form): one patient.
  await page.goto(`${base}/ui/registration/new`);
  await page.fill('#given', 'Anil');
  await page.fill('#family', 'Mehtaji');
  await page.selectOption('#gender', 'male');
  await page.fill('#birth', '1985-01-01');
  await page.fill('#mobile', '98123 45678');
  const form = new URLSearchParams();
  for (const name of ['csrf', 'key', 'given', 'family', 'gender', 'birth', 'age', 'mobile']) {
    form.set(name, await page.inputValue(`[name=${name}]`));
  }
  const cookie = (await page.context().cookies()).map((c) => `${c.name}=${c.value}`).join('; ');
  const post = () => fetch(`${base}/ui/registration/new`, {
    method: 'POST', redirect: 'manual', body: form,
    headers: { 'content-type': 'application/x-www-form-urlencoded', cookie },
  });
  const [a, b] = await Promise.all([post(), post()]);
  const third = await post();
  for (const r of [a, b, third]) assert.ok([303, 409].includes(r.status), `status ${r.status}`);
  assert.equal(third.status, 303, 'once saved, the same form leads to the patient it registered');
  await page.goto(`${base}/ui/registration?q=Mehtaji`);
  assert.equal(await page.locator('#patients tbody tr').count(), 1, 'one Anil Mehtaji');

  // हिन्दी at the desk.
  await page.click('#lang-switch');
  assert.match(await page.textContent('h1'), /पंजीकरण काउंटर/);
  await page.click('#lang-switch');
  await page.close();
});

test('a new staff account signs in with its one-time password and must choose its own first', async () => {
  const oneTime = vaidya('user', 'add', '--data', data, '--name', 'reg.kiran', '--role', 'registration').match(/One-time password: (\S+)/)[1];
  const page = await browser.newPage();
  await page.goto(`${base}/ui/registration`);
  await signIn(page, { name: 'reg.kiran', password: oneTime });
  assert.equal(new URL(page.url()).pathname, '/ui/password');
  // Until then no other page opens.
  await page.goto(`${base}/ui/registration`);
  assert.match(page.url(), /\/ui\/login/);
  await page.goBack();
  await page.goto(`${base}/ui/password?next=%2Fui%2Fregistration`);
  const choose = async (old, next, repeat) => {
    await page.fill('#old', old);
    await page.fill('#new', next);
    await page.fill('#repeat', repeat);
    await page.press('#repeat', 'Enter');
    await page.waitForLoadState('domcontentloaded');
  };
  await choose(oneTime, NEW_PASSWORD, `${NEW_PASSWORD}!`);
  assert.match(await page.textContent('#repeat-error'), /not the same/);
  await choose('wrong one', NEW_PASSWORD, NEW_PASSWORD);
  assert.match(await page.textContent('#old-error'), /not right/);
  await shot(page, 'choose-password');
  await choose(oneTime, NEW_PASSWORD, NEW_PASSWORD);
  assert.equal(new URL(page.url()).pathname, '/ui/registration');
  await page.close();
});

test('the OPD: walk-in tokens (a double submit gives one), a booking, calling the next patient, the consultation, and the queue board', async () => {
  const clerk = await account('opd.ravi', 'registration');
  const doctor = await account('dr.sharma.ui', 'doctor', '--department', 'gen-med', '--practitioner', 'dr-sharma');
  const token = vaidya('token', '--data', data, '--user', 'opd.ravi').trim();
  const uhids = (await json('GET', '/fhir/Patient?_count=3&_sort=_id', undefined, token)).body.entry
    .map((e) => e.resource.identifier.find((i) => i.system === 'https://vaidya.dev/fhir/sid/uhid').value);
  const page = await browser.newPage();
  await page.goto(`${base}/ui/login`);
  await signIn(page, clerk);
  await page.click('#opd-link');
  await page.click('#dept-gen-med');
  await page.waitForSelector('#walk-in-form');

  // A mistyped UHID is said beside the form; nothing is made.
  await page.fill('#walk-in-uhid', '1234');
  await page.click('#walk-in');
  assert.match(await page.textContent('#walk-in-error'), /12-digit UHID/);
  assert.equal(await page.getAttribute('#walk-in-uhid', 'aria-invalid'), 'true');

  // A walk-in gets today's first token.
  await page.fill('#walk-in-uhid', uhids[0]);
  await page.click('#walk-in');
  await page.waitForSelector('#opd-notice');
  assert.match(await page.textContent('#opd-notice'), /GENMED-001/);
  assert.match(await page.textContent('#queue'), /GENMED-001/);

  // The same walk-in form posted twice at once: one token.
  await page.fill('#walk-in-uhid', uhids[1]);
  const form = new URLSearchParams();
  for (const name of ['csrf', 'key', 'date', 'uhid']) form.set(name, await page.inputValue(`#walk-in-form [name=${name}]`));
  const cookie = (await page.context().cookies()).map((c) => `${c.name}=${c.value}`).join('; ');
  const post = () => fetch(`${base}/ui/opd/gen-med/walk-in`, {
    method: 'POST', redirect: 'manual', body: form,
    headers: { 'content-type': 'application/x-www-form-urlencoded', cookie },
  });
  const [a, b] = await Promise.all([post(), post()]);
  for (const r of [a, b]) assert.ok([303, 409].includes(r.status), `status ${r.status}`);
  await page.goto(`${base}/ui/opd/gen-med`);
  const tokens = await page.locator('#queue tbody td:first-child').allTextContents();
  assert.deepEqual(tokens.filter((t) => t.startsWith('GENMED-')).sort(), ['GENMED-001', 'GENMED-002'], 'two walk-ins, two tokens');

  // A booking on the next day with free General Medicine slots.
  const slot = (await json('GET', '/fhir/Slot?schedule=Schedule/dr-sharma-opd&status=free&_sort=start&_count=1', undefined, token)).body.entry[0].resource;
  const day = new Date(Date.parse(slot.start) + 330 * 60_000).toISOString().slice(0, 10); // IST date
  await page.goto(`${base}/ui/opd/gen-med?date=${day}`);
  const rowsOf = () => page.locator('#queue tbody tr', { hasText: uhids[2] }).allTextContents();
  const before = (await rowsOf()).length;
  await page.fill('#book-uhid', uhids[2]);
  await page.selectOption('#slot', slot.id);
  await page.click('#book');
  await page.waitForSelector('#opd-notice');
  const after = await rowsOf();
  assert.equal(after.length, before + 1, 'one new booking');
  assert.ok(after.every((r) => /Booked/.test(r)), after.join('|'));
  await shot(page, 'opd-day-booked');

  // Calling: the lowest waiting token first; the board shows it as called.
  await page.goto(`${base}/ui/opd/gen-med`);
  await page.click('#call-next');
  await page.waitForLoadState('domcontentloaded');
  assert.match(await page.locator('#queue tbody tr', { hasText: 'GENMED-001' }).textContent(), /Called/);
  await shot(page, 'opd-day');
  const board = await browser.newPage();
  await board.context().addCookies(await page.context().cookies());
  await board.goto(`${base}/ui/opd/gen-med/board`);
  assert.match(await board.textContent('#calling'), /GENMED-001/);
  assert.match(await board.textContent('#waiting'), /GENMED-002/);
  assert.doesNotMatch(await board.content(), new RegExp(uhids[0]), 'the board shows tokens, not who holds them');
  assert.match(await board.getAttribute('meta[http-equiv=refresh]', 'content'), /^\d+$/, 'the board reloads itself');
  await shot(board, 'opd-board');

  // The doctor of the department starts and ends the consultation; the board follows.
  const desk = await browser.newPage();
  await desk.goto(`${base}/ui/login`);
  await signIn(desk, doctor);
  await desk.goto(`${base}/ui/opd/gen-med`);
  await desk.locator('#queue tbody tr', { hasText: 'GENMED-001' }).locator('button[data-to=in-consultation]').click();
  await desk.waitForLoadState('domcontentloaded');
  assert.match(await desk.locator('#queue tbody tr', { hasText: 'GENMED-001' }).textContent(), /With the doctor/);

  // The chart, from the queue: a note, a diagnosis and an order go into the visit.
  await desk.locator('#queue tbody tr', { hasText: 'GENMED-001' }).locator('a.chart-link').click();
  await desk.waitForSelector('#note-form');
  assert.match(await desk.textContent('#chart-uhid'), new RegExp(uhids[0]));
  await desk.fill('#note-text', 'Fever for three days, no cough. Throat congested.');
  await desk.click('#save-note');
  await desk.waitForSelector('#notes');
  await desk.fill('#diagnosis-text', 'Viral pharyngitis');
  await desk.check('#provisional');
  await desk.click('#save-diagnosis');
  await desk.waitForSelector('#diagnoses');
  assert.match(await desk.textContent('#diagnoses'), /Viral pharyngitis.*provisional/s);
  const test = (await desk.locator('#test option').allTextContents())[1];
  await desk.selectOption('#test', { index: 1 });
  await desk.click('#save-order');
  await desk.waitForSelector('#orders');
  assert.match(await desk.textContent('#orders'), new RegExp(test.split(' ')[0]));
  assert.match(await desk.textContent('#notes'), /Fever for three days/);
  // An empty note is refused beside the form; nothing is written.
  await desk.evaluate(() => document.querySelector('#note-text').removeAttribute('required'));
  await desk.click('#save-note');
  assert.match(await desk.textContent('#note-error'), /Write the note/);
  assert.equal(await desk.getAttribute('#note-text', 'aria-invalid'), 'true');
  await shot(desk, 'chart-in-visit');

  // A patient with a released result: the trend table marks it new (no visit since).
  await desk.goto(`${base}/ui/chart/pt-2`);
  assert.match(await desk.textContent('#results'), /new/);
  assert.equal(await desk.locator('#no-visit').count(), 1, 'no visit in progress: no forms');
  await shot(desk, 'chart-results');
  await desk.goto(`${base}/ui/opd/gen-med`);
  await desk.locator('#queue tbody tr', { hasText: 'GENMED-001' }).locator('button[data-to=done]').click();
  await desk.waitForLoadState('domcontentloaded');
  assert.match(await desk.locator('#queue tbody tr', { hasText: 'GENMED-001' }).textContent(), /Seen/);
  await board.reload();
  assert.doesNotMatch(await board.textContent('#calling'), /GENMED-001/);

  // A step the queue does not allow is refused with the reason, and changes nothing.
  const form2 = new URLSearchParams({ csrf: form.get('csrf'), date: form.get('date'), appointment: 'no-such-appointment', to: 'done' });
  const refused = await fetch(`${base}/ui/opd/gen-med/queue`, { method: 'POST', redirect: 'manual', body: form2, headers: { 'content-type': 'application/x-www-form-urlencoded', cookie } });
  assert.equal(refused.status, 422);
  assert.match(await refused.text(), /no-such-appointment is not known/);

  // हिन्दी on the board.
  await board.goto(`${base}/ui/lang?to=hi&next=/ui/opd/gen-med/board`);
  assert.match(await board.textContent('#calling-h'), /अभी बुलाया जा रहा है/);
  await shot(board, 'opd-board-hi');
  for (const p of [page, board, desk]) await p.close();
});

test('the laboratory: collection with a barcode, result entry with ranges and flags, verification by a second person, release and the printed report', async () => {
  const meena = await account('lab.meena', 'lab', '--department', 'lab');
  const arun = await account('lab.arun', 'lab', '--department', 'lab');
  const token = vaidya('token', '--data', data, '--user', 'lab.meena').trim();
  const order = await json('POST', '/fhir/ServiceRequest', {
    resourceType: 'ServiceRequest', status: 'active', intent: 'order', subject: { reference: 'Patient/pt-3' },
    instantiatesCanonical: ['https://vaidya.dev/demo/catalogue/hb'],
    code: { coding: [{ system: 'http://loinc.org', code: '718-7', display: 'Hemoglobin [Mass/volume] in Blood' }] },
  }, token);
  assert.equal(order.status, 201, JSON.stringify(order.body));
  const id = order.body.id;

  const page = await browser.newPage();
  await page.goto(`${base}/ui/login`);
  await signIn(page, meena);
  await page.click('#lab-link');
  await page.fill(`#barcode-${id}`, 'LAB-TEST-0001');
  await page.locator(`#to-collect #order-${id} button`).click();
  await page.waitForSelector('#lab-notice');
  assert.match(await page.textContent('#lab-notice'), /LAB-TEST-0001/);
  assert.equal(await page.locator(`#to-enter #order-${id}`).count(), 1);
  await shot(page, 'lab-worklist');

  // Result entry: a value that is not a number is refused beside its row; nothing is saved.
  await page.locator(`#to-enter #order-${id} a`).click();
  await page.waitForSelector('#results-form');
  assert.equal(await page.inputValue('#code0'), '718-7');
  await page.fill('#value0', '9.6');
  await page.fill('#unit0', 'g/dL');
  await page.fill('#low0', '12');
  await page.fill('#high0', '15.5');
  await page.fill('#name1', 'Haematocrit');
  await page.fill('#value1', 'abc');
  await page.click('#save-results');
  await page.waitForSelector('#row-error1');
  assert.match(await page.textContent('#row-error1'), /as a number/);
  assert.equal(await page.getAttribute('#name1', 'aria-invalid'), 'true');
  await page.fill('#value1', '31');
  await page.fill('#unit1', '%');
  await page.fill('#low1', '36');
  await page.fill('#high1', '46');
  await shot(page, 'lab-results-entry');
  await page.click('#save-results');
  await page.waitForSelector(`#to-verify #order-${id}`);

  // The one who entered the results may not verify them.
  await page.locator(`#to-verify #order-${id} button`).click();
  await page.waitForSelector('#lab-error');
  assert.match(await page.textContent('#lab-error'), /second person/);

  // A second technician verifies and releases; the printed report shows the flags.
  const second = await browser.newPage();
  await second.goto(`${base}/ui/login`);
  await signIn(second, arun);
  await second.goto(`${base}/ui/lab`);
  await second.locator(`#to-verify #order-${id} button`).click();
  await second.waitForSelector(`#to-release #order-${id}`);
  await second.locator(`#to-release #order-${id} button`).click();
  await second.waitForSelector(`#released #order-${id}`);
  await second.locator(`#released #order-${id} a.print-link`).click();
  await second.waitForLoadState('domcontentloaded');
  const printed = await second.textContent('body');
  assert.match(printed, /Hemoglobin/);
  assert.match(printed, /Haematocrit/);
  assert.match(printed, /Low/);
  await shot(second, 'lab-printed-report');
  await page.close();
  await second.close();
});

test('the billing counter: charges, invoice, payments by UPI and cash (a double submit pays once), receipt, refund and the day-end report', async () => {
  const cashier = await account('bill.priya', 'billing');
  const clerkToken = vaidya('token', '--data', data, '--user', 'reg.asha').trim();
  const made = await json('POST', '/fhir/Patient', {
    resourceType: 'Patient', name: [{ given: ['Kamla'], family: 'Devi' }], gender: 'female', birthDate: '1961-05-04',
  }, clerkToken);
  assert.equal(made.status, 201, JSON.stringify(made.body));
  const uhid = made.body.identifier.find((i) => i.system === 'https://vaidya.dev/fhir/sid/uhid').value;

  const page = await browser.newPage();
  await page.goto(`${base}/ui/login`);
  await signIn(page, cashier);
  await page.click('#billing-link');
  await page.fill('#uhid', uhid);
  await page.press('#uhid', 'Enter');
  await page.waitForLoadState('domcontentloaded');
  if (!(await page.locator('#charges').count())) throw new Error(await page.textContent('main'));
  assert.match(await page.textContent('#charges'), /registration.*₹10\.00/is);
  await page.click('#make-invoice');
  await page.waitForSelector('.pay-form');
  assert.equal(await page.locator('#no-charges').count(), 1, 'the charge is on the invoice now');
  const section = page.locator('section[id^=invoice-]');
  assert.match(await section.locator('.due').textContent(), /₹10\.00/);

  // A mistyped amount is said, and nothing is taken.
  await section.locator('input[name=amount]').first().fill('ten');
  await section.locator('button.pay').click();
  assert.match(await section.locator('.pay-form .error').textContent(), /amount in rupees/);
  assert.equal(await section.locator('.pay-form input[name=amount]').getAttribute('aria-invalid'), 'true');

  // ₹4 by UPI, the form posted twice at once: one payment.
  await section.locator('input[name=amount]').first().fill('4');
  await section.locator('select[name=mode]').selectOption('upi');
  const form = new URLSearchParams();
  for (const name of ['csrf', 'uhid', 'invoice', 'key', 'amount', 'mode']) form.set(name, await section.locator(`.pay-form [name=${name}]`).inputValue());
  const cookie = (await page.context().cookies()).map((c) => `${c.name}=${c.value}`).join('; ');
  const post = () => fetch(`${base}/ui/billing/pay`, { method: 'POST', redirect: 'manual', body: form, headers: { 'content-type': 'application/x-www-form-urlencoded', cookie } });
  const [a, b] = await Promise.all([post(), post()]);
  for (const r of [a, b]) assert.equal(r.status, 303);
  await page.goto(`${base}/ui/billing?uhid=${uhid}`);
  assert.equal(await section.locator('.receipts tr').count(), 1, 'one receipt for the double submit');
  assert.match(await section.locator('.due').textContent(), /₹6\.00/);

  // The rest in cash (the amount is filled in with what is due).
  assert.equal(await section.locator('input[name=amount]').first().inputValue(), '6.00');
  await section.locator('button.pay').click();
  await page.waitForSelector('#billing-notice');
  assert.match(await section.locator('.due').textContent(), /₹0\.00/);
  await shot(page, 'billing-counter');

  // The receipt prints.
  await section.locator('a.receipt-link').first().click();
  await page.waitForSelector('#receipt-number');
  assert.match(await page.textContent('#receipt-amount'), /₹4\.00/);
  await shot(page, 'billing-receipt');
  await page.goBack();

  // A refund of ₹2, with its reason.
  await section.locator('.refund-form input[name=amount]').fill('2');
  await section.locator('.refund-form input[name=reason]').fill('Registration fee charged twice by mistake');
  await section.locator('button.refund').click();
  await page.waitForSelector('#billing-notice');
  assert.equal(await section.locator('.receipts tr').count(), 3);

  // The day's report: this cashier took ₹10 and gave back ₹2.
  await page.goto(`${base}/ui/billing/day`);
  const row = await page.locator('#day-end tbody tr', { hasText: 'bill.priya' }).textContent();
  assert.match(row, /₹8\.00/);
  await shot(page, 'billing-day-end');
  await page.close();
});

test('the whole patient journey through the screens: registration, OPD token, consultation with an order, laboratory, billing, and the patient portal', async () => {
  const clerk = await account('journey.clerk', 'registration');
  const doctor = await account('journey.doctor', 'doctor', '--department', 'gen-med', '--practitioner', 'dr-khan');
  const tech1 = await account('journey.lab1', 'lab', '--department', 'lab');
  const tech2 = await account('journey.lab2', 'lab', '--department', 'lab');
  const cashier = await account('journey.cashier', 'billing');
  const as = async (who) => {
    const p = await browser.newPage();
    await p.goto(`${base}/ui/login`);
    await signIn(p, who);
    return p;
  };

  // 1. The registration desk registers the patient and gives an OPD token.
  const desk = await as(clerk);
  await desk.goto(`${base}/ui/registration/new`);
  await desk.fill('#given', 'Bhagwati');
  await desk.fill('#family', 'Prasad');
  await desk.selectOption('#gender', 'female');
  await desk.fill('#age', '58');
  await desk.fill('#mobile', '97111 22334');
  await desk.click('#register');
  await desk.waitForSelector('#slip-uhid');
  const uhid = (await desk.textContent('#slip-uhid')).trim();
  await desk.goto(`${base}/ui/opd/gen-med`);
  await desk.fill('#walk-in-uhid', uhid);
  await desk.click('#walk-in');
  await desk.waitForSelector('#opd-notice');
  const token = (await desk.textContent('#opd-notice')).match(/GENMED-\d+/)[0];

  // 2. The doctor calls the patient, opens the chart, writes and orders, and finishes.
  const doc = await as(doctor);
  await doc.goto(`${base}/ui/opd/gen-med`);
  const row = () => doc.locator('#queue tbody tr', { hasText: token });
  await row().locator('button[data-to=called]').click();
  await doc.waitForLoadState('domcontentloaded');
  await row().locator('button[data-to=in-consultation]').click();
  await doc.waitForLoadState('domcontentloaded');
  await row().locator('a.chart-link').click();
  await doc.waitForSelector('#note-form');
  await doc.fill('#note-text', 'Tired for a month. Pale.');
  await doc.click('#save-note');
  await doc.waitForSelector('#notes');
  await doc.fill('#diagnosis-text', 'Anaemia, cause to be found');
  await doc.click('#save-diagnosis');
  await doc.waitForSelector('#diagnoses');
  const hb = await doc.locator('#test option', { hasText: 'Hemoglobin' }).first().getAttribute('value');
  await doc.selectOption('#test', hb);
  await doc.click('#save-order');
  await doc.waitForSelector('#orders');
  await doc.goto(`${base}/ui/opd/gen-med`);
  await row().locator('button[data-to=done]').click();
  await doc.waitForLoadState('domcontentloaded');
  assert.match(await row().textContent(), /Seen/);

  // 3. The laboratory collects, enters, verifies (a second person) and releases.
  const lab = await as(tech1);
  await lab.goto(`${base}/ui/lab`);
  const order = lab.locator('#to-collect tbody tr', { hasText: uhid });
  await order.locator('button').click();
  await lab.waitForSelector('#lab-notice');
  await lab.locator('#to-enter tbody tr', { hasText: uhid }).locator('a').click();
  await lab.waitForSelector('#results-form');
  await lab.fill('#value0', '8.9');
  await lab.fill('#unit0', 'g/dL');
  await lab.fill('#low0', '12');
  await lab.fill('#high0', '15.5');
  await lab.click('#save-results');
  await lab.waitForSelector('#to-verify');
  const lab2 = await as(tech2);
  await lab2.goto(`${base}/ui/lab`);
  await lab2.locator('#to-verify tbody tr', { hasText: uhid }).locator('button').click();
  await lab2.waitForLoadState('domcontentloaded');
  await lab2.locator('#to-release tbody tr', { hasText: uhid }).locator('button').click();
  await lab2.waitForLoadState('domcontentloaded');
  assert.equal(await lab2.locator('#released tbody tr', { hasText: uhid }).count(), 1);

  // The doctor sees the result in the chart, flagged low and new.
  await doc.goBack();
  await doc.goto(`${base}/ui/opd/gen-med`);
  await row().locator('a.chart-link').click();
  await doc.waitForSelector('#results');
  assert.match(await doc.textContent('#results'), /8\.9 g\/dL.*Low/s);

  // 4. The cashier bills everything and takes the payment.
  const counter = await as(cashier);
  await counter.goto(`${base}/ui/billing?uhid=${uhid}`);
  assert.match(await counter.textContent('#charges'), /registration/i);
  await counter.click('#make-invoice');
  await counter.waitForSelector('.pay-form');
  const due = await counter.locator('section[id^=invoice-] input[name=amount]').first().inputValue();
  await counter.locator('section[id^=invoice-] button.pay').click();
  await counter.waitForSelector('#billing-notice');
  assert.match(await counter.locator('section[id^=invoice-] .due').textContent(), /₹0\.00/);

  // 5. The patient signs in with a code and sees the visit, the report and the bill.
  const me = await browser.newPage();
  await me.goto(`${base}/ui/patient/login`);
  await me.fill('#who', uhid);
  await me.press('#who', 'Enter');
  const code = lastSms('9711122334').match(/code is (\d{6})/)[1];
  await me.fill('#code', code);
  await me.press('#code', 'Enter');
  await me.waitForURL(/\/ui\/$/);
  await me.click('#my-appointments-link');
  assert.match(await me.textContent('#my-appointments'), new RegExp(token));
  await me.goto(`${base}/ui/my/reports`);
  assert.match(await me.textContent('#my-reports'), /Hemoglobin/);
  await me.locator('a.view-report').first().click();
  await me.waitForLoadState('domcontentloaded');
  assert.match(await me.textContent('body'), /8\.9 g\/dL/);
  await shot(me, 'journey-patient-report');
  await me.goto(`${base}/ui/my/bills`);
  assert.match(await me.textContent('.my-bill'), new RegExp(`₹${due.replace('.', '\\.')}`));
  await shot(me, 'journey-patient-bills');
  await me.goto(`${base}/ui/my/access`);
  const trail = await me.locator('#trail tbody tr').allInnerTexts();
  assert.ok(trail.some((r) => r.includes('journey.doctor')), 'the doctor who read the record is listed');
  assert.ok(trail.some((r) => r.includes('journey.lab1')), 'so is the lab');
  // Another patient's report is not theirs to see.
  const other = await me.goto(`${base}/ui/my/report/report-1`);
  assert.notEqual(other.status(), 200);

  // A follow-up: the patient books a free time in General Medicine, then cancels it.
  const deskToken = vaidya('token', '--data', data, '--user', 'journey.clerk').trim();
  const free = (await json('GET', '/fhir/Slot?schedule=Schedule/dr-sharma-opd&status=free&_sort=start&_count=1', undefined, deskToken)).body.entry[0].resource;
  const day = new Date(Date.parse(free.start) + 330 * 60_000).toISOString().slice(0, 10);
  await me.goto(`${base}/ui/my/appointments`);
  await me.click('#book-link');
  await me.selectOption('#dept', 'gen-med');
  await me.fill('#date', day);
  await me.click('#find-slots');
  await me.waitForSelector('#my-book-form');
  await shot(me, 'journey-patient-book');
  await me.click('#book');
  await me.waitForSelector('#my-notice');
  assert.match(await me.textContent('#my-notice'), /Booked/);
  assert.match(await me.textContent('#my-appointments'), /Sharma/);
  const slotNow = (await json('GET', `/fhir/Appointment?patient=Patient/${(await json('GET', `/fhir/Patient?identifier=https://vaidya.dev/fhir/sid/uhid|${uhid}`, undefined, deskToken)).body.entry[0].resource.id}&status=booked`, undefined, deskToken)).body;
  assert.equal(slotNow.total, 1, 'the desk sees the booking');
  await me.locator('button.cancel').first().click();
  await me.waitForSelector('#my-notice');
  assert.match(await me.textContent('#my-notice'), /cancelled/);
  assert.equal(await me.locator('button.cancel').count(), 0);
  for (const p of [desk, doc, lab, lab2, counter, me]) await p.close();
});

// Basic accessibility of a page: one h1 and a language; every field has a label; every button
// and link says what it does; text has at least WCAG AA contrast (4.5:1) against its background.
async function assertAccessible(page, name) {
  const problems = await page.evaluate(() => {
    const out = [];
    if (!document.documentElement.lang) out.push('no lang on <html>');
    if (document.querySelectorAll('h1').length !== 1) out.push(`${document.querySelectorAll('h1').length} h1 elements`);
    for (const el of document.querySelectorAll('input, select, textarea')) {
      if (el.type === 'hidden') continue;
      const labelled = (el.labels && el.labels.length > 0) || el.getAttribute('aria-label') || el.getAttribute('aria-labelledby');
      if (!labelled) out.push(`field without a label: ${el.outerHTML.slice(0, 80)}`);
    }
    for (const el of document.querySelectorAll('button, a')) {
      if (!el.textContent.trim() && !el.getAttribute('aria-label')) out.push(`${el.tagName} without text: ${el.outerHTML.slice(0, 80)}`);
    }
    const rgb = (c) => (c.match(/[\d.]+/g) || []).map(Number);
    const lum = ([r, g, b]) => {
      const ch = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
      return 0.2126 * ch(r) + 0.7152 * ch(g) + 0.0722 * ch(b);
    };
    const background = (el) => {
      for (let e = el; e; e = e.parentElement) {
        const c = rgb(getComputedStyle(e).backgroundColor);
        if (c.length >= 3 && (c.length < 4 || c[3] > 0)) return c.slice(0, 3);
      }
      return [255, 255, 255];
    };
    for (const el of document.querySelectorAll('body *')) {
      if (!el.childNodes || ![...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim())) continue;
      const style = getComputedStyle(el);
      if (style.visibility === 'hidden' || style.display === 'none' || el.closest('.visually-hidden')) continue;
      const [a, b] = [lum(rgb(style.color).slice(0, 3)), lum(background(el))];
      const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
      if (ratio < 4.5) out.push(`contrast ${ratio.toFixed(2)} for "${el.textContent.trim().slice(0, 30)}"`);
    }
    return out;
  });
  assert.deepEqual(problems, [], `${name}:\n${problems.join('\n')}`);
}

test('every main screen passes basic accessibility checks, and a clerk can work with the keyboard alone', async () => {
  const clerk = await account('a11y.clerk', 'registration');
  const doctor = await account('a11y.doctor', 'doctor', '--department', 'gen-med', '--practitioner', 'dr-sharma');
  const tech = await account('a11y.lab', 'lab', '--department', 'lab');
  const cashier = await account('a11y.cashier', 'billing');
  const page = await browser.newPage();

  // Keyboard only: the sign-in form, the desk link, a search.
  await page.goto(`${base}/ui/login`);
  await assertAccessible(page, 'sign in');
  await page.focus('#user');
  await page.keyboard.type(clerk.name);
  await page.keyboard.press('Tab');
  await page.keyboard.type(clerk.password);
  await page.keyboard.press('Enter');
  await page.waitForSelector('#desk-link');
  await page.focus('#desk-link');
  await page.keyboard.press('Enter');
  await page.waitForSelector('#q');
  await page.keyboard.type('Kaur');
  await page.keyboard.press('Enter');
  await page.waitForSelector('#patients');
  const outline = await page.evaluate(() => { document.querySelector('#q').focus(); return getComputedStyle(document.querySelector('#q')).outlineStyle; });
  assert.notEqual(outline, 'none', 'the focused field shows where the focus is');

  const screens = {
    clerk: ['/ui/', '/ui/registration?q=Kaur', '/ui/registration/new', '/ui/opd', '/ui/opd/gen-med', '/ui/opd/gen-med/board'],
    doctor: ['/ui/opd/gen-med', '/ui/chart/pt-2'],
    lab: ['/ui/lab'],
    cashier: ['/ui/billing', '/ui/billing/day'],
  };
  const people = { clerk, doctor, lab: tech, cashier };
  for (const [who, paths] of Object.entries(people).map(([k, v]) => [v, screens[k]])) {
    const p = await browser.newPage();
    await p.goto(`${base}/ui/login`);
    await signIn(p, who);
    for (const path of paths) {
      for (const lang of ['en', 'hi']) {
        await p.goto(`${base}/ui/lang?to=${lang}&next=${encodeURIComponent(path)}`);
        await assertAccessible(p, `${who.name} ${path} (${lang})`);
      }
    }
    await p.close();
  }
  // The checks can fail: an unlabelled field and pale text on the page are both reported.
  await page.evaluate(() => {
    document.querySelector('main').insertAdjacentHTML('beforeend', '<input name="x"><p id="faint">faint</p>');
    document.querySelector('#faint').style.color = '#bbb'; // (the pages' CSP refuses style attributes)
  });
  await assert.rejects(assertAccessible(page, 'spoiled'), (e) => /field without a label/.test(e.message) && /contrast .* "faint"/.test(e.message));
  await page.close();
});

test('the administrator sets up a department, a doctor with a weekly OPD, a price and a staff account, and sees no patient', async () => {
  const admin = await account('admin.uma', 'admin');
  const page = await browser.newPage();
  await page.goto(`${base}/ui/login`);
  await signIn(page, admin);
  await page.click('#admin-link');
  await page.waitForSelector('#department-form');

  // A bad id is said, and nothing is saved.
  await page.fill('#dept-id', 'der m');
  await page.fill('#dept-name', 'Dermatology');
  await page.click('#save-department');
  assert.match(await page.textContent('#department-error'), /letters, digits/);
  await page.fill('#dept-id', 'derm');
  await page.fill('#dept-name', 'Dermatology');
  await page.fill('#dept-hindi', 'त्वचा रोग');
  await page.click('#save-department');
  await page.waitForSelector('#admin-notice');
  assert.match(await page.textContent('#departments'), /Dermatology/);

  await page.fill('#doc-id', 'dr-kapoor');
  await page.fill('#doc-given', 'Nisha');
  await page.fill('#doc-family', 'Kapoor');
  await page.selectOption('#doc-dept', 'derm');
  await page.click('#save-doctor');
  await page.waitForSelector('#admin-notice');
  assert.match(await page.textContent('#doctors'), /Kapoor.*derm/s);

  await page.selectOption('#sch-doctor', 'dr-kapoor');
  await page.selectOption('#sch-dept', 'derm');
  for (const d of ['mon', 'wed', 'fri']) await page.check(`#day-${d}`);
  await page.fill('#sch-start', '10:00');
  await page.fill('#sch-end', '12:00');
  await page.fill('#sch-minutes', '15');
  await page.fill('#sch-capacity', '1');
  await page.fill('#sch-ahead', '14');
  await page.click('#save-schedule');
  await page.waitForSelector('#admin-notice');
  const made = Number((await page.textContent('#admin-notice')).match(/\((\d+) slots made\)/)[1]);
  assert.ok(made >= 8 * 5 && made <= 8 * 6, `${made} slots for six or so clinic days of 8 slots`);

  const before = await page.locator('#tariff tr', { hasText: 'OPD registration' }).textContent();
  assert.match(before, /₹10\.00/);
  await page.selectOption('#price-id', 'tariff-opd-registration');
  await page.fill('#price-new', '20');
  await page.click('#save-price');
  await page.waitForSelector('#admin-notice');
  assert.match(await page.locator('#tariff tr', { hasText: 'OPD registration' }).textContent(), /₹20\.00/);

  // A staff account: its one-time password is shown once, and it signs in.
  await page.fill('#acc-name', 'reg.naveen');
  await page.selectOption('#acc-role', 'registration');
  await page.click('#save-account');
  await page.waitForSelector('#one-time-password');
  const oneTime = (await page.textContent('#one-time-password')).trim();
  await shot(page, 'admin');
  const login = await json('POST', '/auth/login', { user: 'reg.naveen', password: oneTime });
  assert.equal(login.status, 200);
  assert.equal(login.body.must_change_password, true);
  await page.fill('#acc-name', 'reg.naveen');
  await page.click('#save-account');
  assert.match(await page.textContent('#account-error'), /already an account/);

  // The administrator runs the set-up, not the wards: patients' records stay closed.
  await page.goto(`${base}/ui/registration?q=Kaur`);
  assert.equal(await page.locator('#patients').count(), 0);
  await page.goto(`${base}/ui/chart/pt-2`);
  assert.equal(await page.locator('#results').count(), 0);
  // And the account made here is in the audit trail, by the administrator.
  const trail = vaidya('audit', 'report', '--data', data, '--user', 'admin.uma');
  assert.match(trail, /user-add[^\n]*reg\.naveen/);
  await page.close();
});
