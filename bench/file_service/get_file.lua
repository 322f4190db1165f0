-- POST /v1/file_tool/get_file for a random seeded file: the database read
-- path alone (get_by_file_id), no file I/O.
-- usage: wrk ... -s get_file.lua -- FILES
local files = 1000

function init(args)
    files = tonumber(args[1]) or files
    math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 1000)
end

function request()
    local i = math.random(0, files - 1)
    local body = string.format('{"request_id": "seed-%d", "file_name": "file-%d.md"}', i % 100, i)
    return wrk.format("POST", "/v1/file_tool/get_file", {["Content-Type"] = "application/json"}, body)
end
