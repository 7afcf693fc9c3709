/**
 * Discovery: address announcements, nameservers, and subscribing by service
 * name (PostTroll's model; docs/discovery.md).
 * @module
 */
export {
  Announcer,
  BROADCAST_ADDRESS,
  type AnnouncedPeer,
  type AnnounceTarget,
  type AnnouncerMulticastOptions,
  type AnnouncerOptions,
  type AnnouncerEvents,
} from './announcer.js';
export {
  encodeAnnouncement,
  decodeAnnouncement,
  checkAnnouncement,
  DEFAULT_MAX_ANNOUNCEMENT_BYTES,
  MAX_ANNOUNCEMENT_BYTES,
  MAX_ENDPOINTS,
  MAX_SERVICES,
  MAX_NAME_BYTES,
  SUPPORTED_MESSAGE_VERSION,
  type Announcement,
  type EncodeAnnouncementOptions,
} from './announcement.js';
export { announcedEndpoints, type NetworkInterfaces } from './endpoints.js';
export {
  discoveryConfig,
  keepaliveOptions,
  isBroadcastGroup,
  isMulticastGroup,
  ENVIRONMENT_VARIABLES,
  DEFAULT_MULTICAST_GROUP,
  DEFAULT_MULTICAST_PORT,
  DEFAULT_MULTICAST_TTL,
  DEFAULT_ANNOUNCE_INTERVAL,
  DEFAULT_NAMESERVERS,
  DEFAULT_KEEPALIVE_IDLE,
  type DiscoveryConfig,
  type EnvironmentVariable,
  type KeepaliveOptions,
} from './config.js';
export {
  Nameserver,
  NAMESERVER_OBJECT,
  DEFAULT_NAMESERVER_UDP_HOST,
  DEFAULT_NAMESERVER_UDP_PORT,
  DEFAULT_NAMESERVER_GROUP,
  DEFAULT_MAX_AGE,
  DEFAULT_MAX_ENTRIES,
  DEFAULT_MAX_SOURCES,
  DEFAULT_RATE_BURST,
  DEFAULT_RATE_PER_SECOND,
  ADDRESS_SUBJECT_PREFIX,
  type ServiceEntry,
  type RateLimit,
  type NameserverOptions,
  type NameserverUdpOptions,
  type NameserverEvents,
  type NameserverStats,
  type AddressPublication,
} from './nameserver.js';
export {
  NameserverClient,
  DEFAULT_NAMESERVER_TIMEOUT,
  DEFAULT_REGISTER_INTERVAL,
  type NameserverClientOptions,
  type NameserverClientEvents,
  type LookupOptions,
} from './client.js';
export {
  ServiceSubscriber,
  DEFAULT_HEARTBEAT_MULTIPLE,
  DEFAULT_MAX_PUBLISHERS,
  type ServiceSubscriberOptions,
  type ServiceSubscriberEvents,
} from './service-subscriber.js';
export { startHeartbeat, heartbeatSubject, DEFAULT_HEARTBEAT_INTERVAL, type Heartbeat } from './heartbeat.js';
