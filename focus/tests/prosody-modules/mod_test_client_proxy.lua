-- A test stand-in for Jitsi's mod_client_proxy (which Debian's Prosody does not ship), written from its
-- documented behaviour: a component that forwards IQ get/set requests to an online resource of
-- `target_address`, with `from` rewritten to `<component>/<original full JID>`, and routes the answers
-- (addressed to that proxied JID) back to the original sender with `from` = the component.
local jid_split = require "util.jid".split;
local jid_bare = require "util.jid".bare;
local st = require "util.stanza";

local target = module:get_option_string("target_address");
local component = module.host;

local function online_resource()
	local session = prosody.bare_sessions[target];
	if not session then return nil; end
	for resource, s in pairs(session.sessions or {}) do
		if s.presence then return target .. "/" .. resource; end
	end
	return nil;
end

-- Answers addressed to a proxied JID go back to the original sender. (`<component>/<jid>` has no node,
-- so Prosody fires these as iq/host, not iq/full.)
local function answer(event)
	local stanza = event.stanza;
	local _, host, resource = jid_split(stanza.attr.to);
	if host ~= component or not resource then return; end
	if jid_bare(stanza.attr.from) ~= target then return; end
	local back = st.clone(stanza);
	back.attr.from = component;
	back.attr.to = resource;
	module:send(back);
	return true;
end

-- Requests to the component itself.
module:hook("iq/host", function (event)
	local stanza, origin = event.stanza, event.origin;
	local kind = stanza.attr.type;
	if kind == "result" or kind == "error" then return answer(event); end
	if kind ~= "get" and kind ~= "set" then return; end
	local to = online_resource();
	if not to then
		origin.send(st.error_reply(stanza, "cancel", "service-unavailable", "target offline"));
		return true;
	end
	local forwarded = st.clone(stanza);
	forwarded.attr.from = component .. "/" .. stanza.attr.from;
	forwarded.attr.to = to;
	module:send(forwarded);
	return true;
end);

module:hook("iq/full", function (event)
	local kind = event.stanza.attr.type;
	if kind == "result" or kind == "error" then return answer(event); end
end);
