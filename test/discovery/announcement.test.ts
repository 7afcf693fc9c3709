import { Buffer } from 'node:buffer';
import { describe, expect, it } from 'vitest';
import { AnnouncementError } from '../../lib/errors.js';
import { decodeAnnouncement, encodeAnnouncement, type Announcement } from '../../lib/discovery/announcement.js';
import { decodePostTroll } from '../../lib/pubsub/pub-message.js';

const a: Announcement = { identity: 'bob', endpoints: ['tcp://192.0.2.7:40123', 'unix:///run/bob.sock'], services: ['radar', 'radar-alias'], version: 'v1.2' };

describe('announcements', () => {
  it('round-trip, as a PostTroll message PostTroll itself can read (URI, service, supported_message_version)', () => {
    const bytes = encodeAnnouncement(a, { sender: 'u@h', time: new Date('2026-12-03T00:00:00Z') });
    expect(bytes.toString()).toBe(
      'pytroll://address/radar info u@h 2026-12-03T00:00:00+00:00 v1.2 application/json ' +
        '{"URI": "tcp://192.0.2.7:40123", "service": ["radar", "radar-alias"], "supported_message_version": "v1.2", "identity": "bob", "endpoints": ["tcp://192.0.2.7:40123", "unix:///run/bob.sock"]}',
    );
    expect(decodeAnnouncement(bytes)).toEqual(a);
    expect(decodePostTroll(bytes).data).toMatchObject({ URI: a.endpoints[0], service: a.services });
  });

  it('refuses at the call what does not fit one datagram, and bad fields', () => {
    const many = { ...a, services: Array.from({ length: 16 }, (_, i) => `a-service-with-a-rather-long-name-for-the-datagram-limit-${i}`) };
    expect(() => encodeAnnouncement(many)).toThrow(/over the 1024 of one datagram/);
    expect(encodeAnnouncement(many, { maxBytes: 4096 }).length).toBeGreaterThan(1024);
    expect(() => encodeAnnouncement({ ...a, endpoints: ['tcp://0.0.0.0:4000'] })).toThrow(/wildcard/);
    expect(() => encodeAnnouncement({ ...a, endpoints: [] })).toThrow(/endpoints/);
    expect(() => encodeAnnouncement({ ...a, endpoints: ['http://x:1'] })).toThrow(/bad endpoint/);
    expect(() => encodeAnnouncement({ ...a, identity: 'b o b' })).toThrow(AnnouncementError);
    expect(() => encodeAnnouncement({ ...a, services: [] })).toThrow(/services/);
  });

  it('decoding refuses non-PostTroll bytes, other subjects, PostTroll publishers and oversize datagrams', () => {
    expect(() => decodeAnnouncement(Buffer.from('hello'))).toThrow(/not a PostTroll message/);
    expect(() => decodeAnnouncement(Buffer.from('pytroll://other info u@h 2026-12-03T00:00:00 v1.2 application/json {}'))).toThrow(/not \/address/);
    const posttroll =
      'pytroll://address/x info u@h 2026-12-03T00:00:00 v1.2 application/json {"URI": "tcp://1.2.3.4:5", "service": ["x"], "supported_message_version": "v1.2"}';
    expect(() => decodeAnnouncement(Buffer.from(posttroll))).toThrow(/without identity/);
    expect(() => decodeAnnouncement(Buffer.alloc(2000))).toThrow(/2000 bytes, over 1024/);
    const bytes = encodeAnnouncement(a);
    for (let n = 0; n < bytes.length; n += 7) {
      try {
        decodeAnnouncement(bytes.subarray(0, n));
      } catch (e) {
        expect(e).toBeInstanceOf(AnnouncementError);
      }
    }
  });
});
